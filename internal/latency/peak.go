package latency

import (
	"sync/atomic"
	"time"
)

// Peak is the longest duration recorded since it was last taken: the
// worst delay of one kind in a window (a second, for package tailwatch).
// The zero value is ready to use. Record may be called by any number of
// goroutines and allocates nothing; Take is meant for one reader, which
// owns the windows.
type Peak struct{ ns atomic.Int64 }

// Record notes d.
func (p *Peak) Record(d time.Duration) {
	for {
		cur := p.ns.Load()
		if int64(d) <= cur || p.ns.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// Take returns the longest duration recorded since the last Take (0 if
// none) and starts a new window.
func (p *Peak) Take() time.Duration { return time.Duration(p.ns.Swap(0)) }
