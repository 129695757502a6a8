package broker

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/weirhq/weir/storage"
)

// handleInitProducerID hands out producer ids for idempotent producers
// (franz-go enables idempotence by default). Ids are never reused, even
// across restarts. A producer that asks to bump its epoch (v3+, KIP-360)
// keeps its id with the next epoch. Transactional ids are refused:
// weir has no transaction coordinator.
func (b *Broker) handleInitProducerID(_ context.Context, _ *header, req *kmsg.InitProducerIDRequest) reply {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil {
		resp.ErrorCode = errTransactionsUnsupported
		return now(resp)
	}
	if req.Version >= 3 && req.ProducerID >= 0 && req.ProducerEpoch >= 0 && req.ProducerEpoch < math.MaxInt16-1 {
		resp.ProducerID, resp.ProducerEpoch = req.ProducerID, req.ProducerEpoch+1
		return now(resp)
	}
	id, err := b.producers.next()
	if err != nil {
		b.logger.Error("weir: cannot allocate producer id", "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
		return now(resp)
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return now(resp)
}

const (
	producerIDFile  = "producer.id"
	producerIDBlock = 1000
)

// producerIDs allocates producer ids. The file holds the end of the last
// reserved block, so only one call in producerIDBlock writes and fsyncs; a
// restart skips the rest of the block.
type producerIDs struct {
	fs  storage.FS
	dir string
	mu  struct {
		sync.Mutex
		next, limit int64
	}
}

func openProducerIDs(fs storage.FS, dir string) (*producerIDs, error) {
	p := &producerIDs{fs: fs, dir: dir}
	data, err := readFile(fs, filepath.Join(dir, producerIDFile))
	switch {
	case err == nil:
		n, perr := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if perr != nil || n < 0 {
			return nil, fmt.Errorf("weir: corrupt %s: %q", producerIDFile, data)
		}
		p.mu.next, p.mu.limit = n, n
	case isNotExist(err):
	default:
		return nil, fmt.Errorf("weir: read %s: %w", producerIDFile, err)
	}
	return p, nil
}

func (p *producerIDs) next() (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.next >= p.mu.limit {
		limit := p.mu.next + producerIDBlock
		if err := writeFileAtomic(p.fs, p.dir, producerIDFile, []byte(strconv.FormatInt(limit, 10)+"\n")); err != nil {
			return -1, err
		}
		p.mu.limit = limit
	}
	id := p.mu.next
	p.mu.next++
	return id, nil
}
