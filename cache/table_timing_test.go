//go:build !ptrcache

package cache

// Benchmarks of the table beside two baselines:
//   - ptrLRU: the pointer-rich LRU of ptrtable.go (map[Key]*list.Element +
//     container/list per shard, every entry a heap object with pointers:
//     the shape of the Go service Discord replaced), the Table of a
//     -tags ptrcache build, run here beside the arena;
//   - valueMap: a plain map[Key]State, no eviction.
// and a bare random memory probe over an array as large as the arena.
//
// Sizes come from READSTATES_BENCH_SIZES (default "1000000,10000000"):
//
//	READSTATES_BENCH_SIZES=1000000,10000000,50000000 go test -run '^$' -bench Table -benchtime 2000000x ./cache/

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// store is what the benchmarks drive; every implementation is loaded with
// keys 0..size-1 and then hit at random.
type store interface {
	incr(k Key, delta int64)
	get(k Key) State
}

// loader is a store that evicts: load brings in k, a key it lacks, as a
// read-through does (Reserve, then Fill), evicting another.
type loader interface {
	load(k Key)
}

type arenaStore struct{ t *Table }

func (a arenaStore) incr(k Key, d int64) { a.t.Lookups(true).Incr(k, d) }
func (a arenaStore) get(k Key) State     { s, _ := a.t.Lookups(true).Get(k); return s }
func (a arenaStore) load(k Key)          { fill1(a.t, k) }

type ptrStore struct{ t *ptrTable }

func (p ptrStore) incr(k Key, d int64) { p.t.incr(k, d, true) }
func (p ptrStore) get(k Key) State     { s, _ := p.t.get(k, true); return s }
func (p ptrStore) load(k Key)          { fill1(p.t, k) }

type valueMap struct {
	mu sync.Mutex
	m  map[Key]State
}

func (v *valueMap) incr(k Key, d int64) {
	v.mu.Lock()
	if s, ok := v.m[k]; ok {
		s.MentionCount += int32(d)
		v.m[k] = s
	}
	v.mu.Unlock()
}

func (v *valueMap) get(k Key) State {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[k]
}

func benchKey(i uint64) Key { return Key{User: int64(i), Channel: int64(i) * 31} }

// rng is a xorshift generator: a few cycles, no allocation, no lock.
type rng uint64

func (r *rng) next() uint64 {
	x := uint64(*r)
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*r = rng(x)
	return x
}

func benchSizes(b *testing.B) []int {
	spec := os.Getenv("READSTATES_BENCH_SIZES")
	if spec == "" {
		spec = "1000000,10000000"
	}
	var sizes []int
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("READSTATES_BENCH_SIZES: bad size %q", f)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

func rssBytes() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(fields[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func settle() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return rssBytes()
}

// gcCost times forced GC cycles and reads how much heap one scans.
func gcCost() (perGC time.Duration, scanned uint64) {
	const cycles = 5
	start := time.Now()
	for range cycles {
		runtime.GC()
	}
	perGC = time.Since(start) / cycles
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(s)
	return perGC, s[0].Value.Uint64()
}

// BenchmarkTable runs every implementation at every size. Each
// implementation is built once per size, then measured: Incr and Get on
// random present keys, on one goroutine and in parallel, bytes per entry
// (RSS delta) and the cost of a forced GC while it is alive.
func BenchmarkTable(b *testing.B) {
	for _, size := range benchSizes(b) {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			benchImpl(b, "probe", size, nil)
			benchImpl(b, "arena", size, func() store {
				t, err := New(Config{Entries: size})
				if err != nil {
					b.Fatal(err)
				}
				fill(t, size)
				return arenaStore{t}
			})
			benchImpl(b, "ptrLRU", size, func() store {
				t, err := newPtrTable(Config{Entries: size})
				if err != nil {
					b.Fatal(err)
				}
				fill(t, size)
				return ptrStore{t}
			})
			benchImpl(b, "map", size, func() store {
				v := &valueMap{m: make(map[Key]State, size)}
				for i := range size {
					v.m[benchKey(uint64(i))] = State{MentionCount: 1, LastMessageID: int64(i)}
				}
				return v
			})
		})
	}
}

func benchImpl(b *testing.B, name string, size int, build func() store) {
	before := settle()
	if build == nil {
		benchProbe(b, size, before)
		return
	}
	s := build()
	after := settle()
	perGC, scanned := gcCost()
	n := uint64(size)
	b.Run(name+"/incr", func(b *testing.B) {
		r := rng(88172645463325252)
		for b.Loop() {
			s.incr(benchKey(r.next()%n), 1)
		}
		report(b, before, after, size, perGC, scanned)
	})
	b.Run(name+"/get", func(b *testing.B) {
		r := rng(88172645463325252)
		for b.Loop() {
			s.get(benchKey(r.next() % n))
		}
	})
	b.Run(name+"/incr-parallel", func(b *testing.B) {
		var seed sync.Mutex
		next := uint64(1)
		b.RunParallel(func(pb *testing.PB) {
			seed.Lock()
			next += 0x9E3779B97F4A7C15
			r := rng(next)
			seed.Unlock()
			for pb.Next() {
				s.incr(benchKey(r.next()%n), 1)
			}
		})
	})
	if l, ok := s.(loader); ok {
		// Every op a miss of a new key on a full table: its eviction
		// (the CLOCK sweep and the deletion's shift) is what a miss, and
		// each read state of a partition read, pays under a shard lock.
		b.Run(name+"/evict", func(b *testing.B) {
			i := int64(size)
			for b.Loop() {
				l.load(Key{User: i, Channel: i * 31})
				i++
			}
		})
	}
	switch s := s.(type) {
	case arenaStore:
		s.t.Close()
	case ptrStore:
		s.t.Close()
	}
	runtime.KeepAlive(s)
}

func report(b *testing.B, before, after int64, size int, perGC time.Duration, scanned uint64) {
	b.ReportMetric(float64(after-before)/float64(size), "B/entry")
	b.ReportMetric(float64(perGC.Microseconds())/1000, "gc-ms")
	b.ReportMetric(float64(scanned)/(1<<20), "gc-scan-MB")
}

// benchProbe is the floor: one random read-modify-write of a word in an
// array as large as the table's arena at this size, allocated the same way
// (so with the same page size). Each index depends on the word read
// before, as each Incr waits for the one before (its lock is a full
// barrier): without that, the CPU overlaps independent misses and the
// "floor" would measure memory bandwidth, not latency.
func benchProbe(b *testing.B, size int, _ int64) {
	slots := int(float64(size) / maxLoad)
	mem, release, err := allocEntries(slots)
	if err != nil {
		b.Fatal(err)
	}
	defer release()
	arr := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(mem))), slots*int(unsafe.Sizeof(entry{}))/8)
	n := uint64(len(arr))
	b.Run("probe/incr", func(b *testing.B) {
		r := rng(88172645463325252)
		var last uint64
		for b.Loop() {
			i := (r.next() + last&1) % n
			last = arr[i]
			arr[i] = last + 1
		}
	})
}
