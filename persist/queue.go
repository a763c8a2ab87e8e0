package persist

import "github.com/readstates/readstates/cache"

// writeQueue orders the pending records that wait for a write (those not
// in a write under way) by user: users in the order their first waiting
// record arrived, and each user's records in arrival order. A writer takes
// whole users, so a Store that writes a user's partition in one request
// (Cassandra: one batch per user) gets every waiting row of a user at
// once, whatever order the cache handed them over in.
//
// The links live in the pending records themselves (pendingRecord.next),
// so a waiting record costs one map entry and no allocation; a waiting
// user costs one entry of users and one slot of order.
//
// Invariants: a key is linked at most once, and only while it is in
// pending; a user is in users, and once in order, exactly while it has
// linked keys; size is the number of linked keys.
type writeQueue struct {
	pending map[cache.Key]pendingRecord // the Engine's, which holds the links
	users   map[int64]userChain
	order   ring
	size    int
}

// userChain is one user's waiting keys, linked from head to tail.
type userChain struct {
	head, tail cache.Key
	n          int
}

func newWriteQueue(pending map[cache.Key]pendingRecord, hint int) writeQueue {
	return writeQueue{pending: pending, users: make(map[int64]userChain), order: newRing(hint)}
}

// pushBack links k, whose record is in pending, after its user's other
// waiting keys.
func (q *writeQueue) pushBack(k cache.Key) {
	c, ok := q.users[k.User]
	if !ok {
		q.order.pushBack(k.User)
		c.head = k
	} else {
		q.link(c.tail, k)
	}
	c.tail = k
	c.n++
	q.users[k.User] = c
	q.size++
}

// pushFront links k before its user's other waiting keys, and the user
// first if it had none: a failed write goes back where it was.
func (q *writeQueue) pushFront(k cache.Key) {
	c, ok := q.users[k.User]
	if !ok {
		q.order.pushFront(k.User)
		c.tail = k
	} else {
		q.link(k, c.head)
	}
	c.head = k
	c.n++
	q.users[k.User] = c
	q.size++
}

func (q *writeQueue) link(from, to cache.Key) {
	r := q.pending[from]
	r.next = to
	q.pending[from] = r
}

// exceeds reports whether more is waiting than one take of room keys and
// users users takes.
func (q *writeQueue) exceeds(room, users int) bool {
	return q.size > room || (users > 0 && len(q.users) > users)
}

// front returns the oldest waiting key.
func (q *writeQueue) front() (cache.Key, bool) {
	u, ok := q.order.front()
	if !ok {
		return cache.Key{}, false
	}
	return q.users[u].head, true
}

// take unlinks whole users, first come first, and calls fn with each of
// their keys, while fewer than room keys and fewer than users users were
// taken (users <= 0: no bound on users). A user with more waiting keys
// than room is split only when it comes first.
func (q *writeQueue) take(room, users int, fn func(cache.Key)) {
	for took := 0; room > 0 && (users <= 0 || took < users); took++ {
		u, ok := q.order.front()
		if !ok {
			return
		}
		c := q.users[u]
		if c.n > room && took > 0 {
			return // the next batch takes the user whole
		}
		n := min(c.n, room)
		k := c.head
		for i := range n {
			fn(k)
			if i < n-1 {
				k = q.pending[k].next
			}
		}
		room -= n
		q.size -= n
		if n == c.n {
			delete(q.users, u)
			q.order.popFront()
			continue
		}
		c.head, c.n = q.pending[k].next, c.n-n
		q.users[u] = c
		return
	}
}

// ring is a growable ring of user ids.
type ring struct {
	buf        []int64
	head, size int
}

func newRing(hint int) ring { return ring{buf: make([]int64, max(min(hint, 1<<16), 16))} }

func (r *ring) grow() {
	if r.size < len(r.buf) {
		return
	}
	buf := make([]int64, 2*len(r.buf))
	for i := range r.size {
		buf[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = buf, 0
}

func (r *ring) pushBack(u int64) {
	r.grow()
	r.buf[(r.head+r.size)%len(r.buf)] = u
	r.size++
}

func (r *ring) pushFront(u int64) {
	r.grow()
	r.head = (r.head - 1 + len(r.buf)) % len(r.buf)
	r.buf[r.head] = u
	r.size++
}

func (r *ring) front() (int64, bool) {
	if r.size == 0 {
		return 0, false
	}
	return r.buf[r.head], true
}

func (r *ring) popFront() {
	r.head = (r.head + 1) % len(r.buf)
	r.size--
}
