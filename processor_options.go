package weir

// processorConfig is a Processor's configuration: the shared client settings
// plus the processor's own.
type processorConfig struct {
	client clientConfig
}
