// Package topicname holds Kafka's rule for topic names, the one place the
// broker, storage and the throughput-unit settings check it.
package topicname

// MaxLen is the longest topic name Kafka accepts.
const MaxLen = 249

// Valid reports whether name follows Kafka's rule: 1 to 249 characters of
// [a-zA-Z0-9._-], and not "." or "..".
func Valid(name string) bool {
	return BadChar(name) < 0 && name != "" && len(name) <= MaxLen && name != "." && name != ".."
}

// BadChar is the index of the first character of name outside
// [a-zA-Z0-9._-], or -1.
func BadChar(name string) int {
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return i
		}
	}
	return -1
}
