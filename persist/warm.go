package persist

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Warm restarts: at a graceful shutdown the server writes the users it
// held to a file (WriteUserList of CachedUsers), and at start it reads
// their partitions back in the background (Warm), at a bounded rate, so
// that the cache is warm again without a storm of reads on the database.
// The list is a hint: a user read back is read as any miss would read it.

// CachedUsers returns the users with read states in the cache that keep
// accepts (all with nil), those used recently first.
func (e *Engine) CachedUsers(keep func(user int64) bool) []int64 {
	users := e.table.Users(nil)
	if keep != nil {
		users = slices.DeleteFunc(users, func(u int64) bool { return !keep(u) })
	}
	return users
}

// Warm reads the partitions of users back into the cache, in order, at
// most rate users a second (each one query), a few at a time, until all
// are read, the cache is nearly full, or ctx ends. A user already read
// (or any of whose read states is cached) is skipped, and so is one that
// guard (if not nil) refuses; one it lets through is read, then exit is
// called (a cluster node counts the read as a command on the user's
// slot). It returns how many users it read; read errors are counted, not
// returned (a later miss reads the user anyway).
func (e *Engine) Warm(ctx context.Context, users []int64, rate float64, guard func(user int64) (exit func(), ok bool)) (read, failed int) {
	if rate <= 0 || len(users) == 0 {
		return 0, 0
	}
	const inflight = 4
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		sem = make(chan struct{}, inflight)
	)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i, u := range users {
		if ctx.Err() != nil || e.closed.Load() {
			break
		}
		if st := e.table.Stats(); float64(st.Entries) >= 0.95*float64(st.Capacity) {
			break // what is left would only evict what was read
		}
		if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		if read, _, _ := e.readWhole(u, anyMark); read {
			continue
		}
		sem <- struct{}{}
		exit := func() {}
		if guard != nil {
			var ok bool
			if exit, ok = guard(u); !ok {
				<-sem
				continue
			}
		}
		wg.Go(func() {
			defer func() { <-sem }()
			defer exit()
			l, own := e.loadUser(ctx, u)
			if own && ctx.Err() == nil { // this read, not one under way for a command
				e.users.warmed.Add(1)
			}
			mu.Lock()
			if l.err != nil {
				failed++
			} else {
				read++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return read, failed
}

// userListMagic starts a user list file; a CRC-32C of everything before
// it ends the file.
const userListMagic = "readstates users v1\n"

// WriteUserList writes users to path, atomically (a temporary file, fsync,
// rename): a crash leaves the old list or the new one, never a torn one.
func WriteUserList(path string, users []int64) error {
	var b bytes.Buffer
	b.WriteString(userListMagic)
	b.Write(binary.AppendUvarint(nil, uint64(len(users))))
	var w [8]byte
	for _, u := range users {
		binary.LittleEndian.PutUint64(w[:], uint64(u))
		b.Write(w[:])
	}
	b.Write(binary.LittleEndian.AppendUint32(nil, crc32.Checksum(b.Bytes(), crc32.MakeTable(crc32.Castagnoli))))
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("user list: %w", err)
	}
	_, err = tmp.Write(b.Bytes())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("user list: %w", err)
	}
	return nil
}

// ReadUserList reads the list WriteUserList wrote to path and removes the
// file: it describes one shutdown, and a later crash must not bring back
// a stale one. A missing file is an empty list; a damaged one an error.
func ReadUserList(path string) ([]int64, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("user list: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return nil, fmt.Errorf("user list: %w", err)
	}
	bad := fmt.Errorf("user list %s: damaged", path)
	if len(data) < len(userListMagic)+4 || string(data[:len(userListMagic)]) != userListMagic {
		return nil, bad
	}
	body, sum := data[:len(data)-4], binary.LittleEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)) != sum {
		return nil, bad
	}
	n, k := binary.Uvarint(body[len(userListMagic):])
	rest := body[len(userListMagic)+max(k, 0):]
	if k <= 0 || uint64(len(rest)) != 8*n {
		return nil, bad
	}
	users := make([]int64, n)
	for i := range users {
		users[i] = int64(binary.LittleEndian.Uint64(rest[8*i:]))
	}
	return users, nil
}
