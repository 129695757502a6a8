//go:build race

package broker

// raceEnabled: sync.Pool drops items at random under the race detector.
const raceEnabled = true
