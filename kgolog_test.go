package weir

import (
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKgoLoggerLevels: the producer keeps kgo's errors and warnings; the
// processor (calm) takes each one level down, and kgo's info is debug for
// both.
func TestKgoLoggerLevels(t *testing.T) {
	for _, c := range []struct {
		calm bool
		kgo  kgo.LogLevel
		want slog.Level
	}{
		{false, kgo.LogLevelError, slog.LevelError},
		{false, kgo.LogLevelWarn, slog.LevelWarn},
		{false, kgo.LogLevelInfo, slog.LevelDebug},
		{true, kgo.LogLevelError, slog.LevelWarn},
		{true, kgo.LogLevelWarn, slog.LevelInfo},
		{true, kgo.LogLevelInfo, slog.LevelDebug},
		{true, kgo.LogLevelDebug, slog.LevelDebug - 4},
	} {
		if got := (kgoLogger{l: slog.Default(), calm: c.calm}).slogLevel(c.kgo); got != c.want {
			t.Errorf("calm %v: kgo level %v logged at %v, want %v", c.calm, c.kgo, got, c.want)
		}
	}
}
