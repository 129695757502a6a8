package broker

import (
	"math/bits"
	"sync"
	"unsafe"
)

// Request frames and fetch reads are pooled by size class (powers of two,
// as nats-server's getMsgBlockBuf), so that a busy connection does not
// allocate a fresh buffer, often hundreds of kilobytes, per request.
const (
	minPoolShift = 12 // 4 KiB: smaller buffers are cheap to allocate
	maxPoolShift = 24 // 16 MiB: larger ones are not kept
)

// bufPools[c] holds buffers of capacity 1<<c, each stored as a pointer to
// its first byte: a pointer fits in an interface without an allocation,
// where a *[]byte would cost one per putBuf.
var bufPools [maxPoolShift + 1]sync.Pool

// getBuf returns a buffer of length n, from the pool when n is in the
// pooled range. Its contents are not zeroed.
func getBuf(n int) []byte {
	if b := pooledBuf(n); b != nil {
		return b
	}
	if c := sizeClass(n); c >= 0 {
		return make([]byte, n, 1<<c) // a pooled size, for putBuf
	}
	return make([]byte, n)
}

// pooledBuf returns a pooled buffer of length n if one is free, or nil
// (without allocating).
func pooledBuf(n int) []byte {
	c := sizeClass(n)
	if c < 0 {
		return nil
	}
	if b := getPooled(c); b != nil {
		return b[:n]
	}
	return nil
}

// putBuf returns b to the pool. The caller must not use b afterwards, nor
// anything that aliases it.
func putBuf(b []byte) {
	c := bits.Len(uint(cap(b))) - 1 // largest class whose size cap(b) covers
	if c < minPoolShift || c > maxPoolShift {
		return
	}
	bufPools[c].Put(unsafe.SliceData(b))
}

func getPooled(c int) []byte {
	if p, ok := bufPools[c].Get().(*byte); ok {
		return unsafe.Slice(p, 1<<c)
	}
	return nil
}

// sizeClass is the smallest class whose buffers hold n bytes, or -1 if n
// is outside the pooled range.
func sizeClass(n int) int {
	if n <= 0 {
		return -1
	}
	c := max(bits.Len(uint(n-1)), minPoolShift)
	if c > maxPoolShift {
		return -1
	}
	return c
}
