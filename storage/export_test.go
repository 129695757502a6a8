package storage

// WithJournalMaxBytes makes the journal checkpoint once a file passes n
// bytes, so that tests see checkpoints without writing 64 MiB.
func WithJournalMaxBytes(o Options, n int64) Options {
	o.journalMaxBytes = n
	return o
}

// JournalEntryHeader is the size of a journal entry's header.
const JournalEntryHeader = journalEntryHeader
