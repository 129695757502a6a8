package storage

import (
	"os"
	"syscall"
)

// osFile syncs with fdatasync: segment appends only need the data and the
// file size on disk, not the timestamps that a full fsync also writes.
type osFile struct{ *os.File }

func wrapOSFile(f *os.File) File { return osFile{f} }

func (f osFile) Sync() error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}
