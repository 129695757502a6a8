package weir

// producerConfig is a Producer's configuration: the shared client settings
// plus the producer's own.
type producerConfig struct {
	client clientConfig
}
