package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// FenceGap is how far above the last published stamp of a node that did
// not hand its groups over the node taking them fences its own stamps:
// more than any node can issue between two renewals.
const FenceGap = int64(1) << 40

// Config configures a Node. Zero values take the defaults documented on
// each field.
type Config struct {
	// ID is the node's id, 40 hex characters as in Redis; it is kept
	// across restarts (NodeID).
	ID string
	// Addr is the host:port clients are told to connect to.
	Addr string
	// Lease is how long the node serves its groups after a renewal
	// began, less Margin (default 10s). Renewals run every Lease/4.
	Lease time.Duration
	// Margin is the safety margin on both sides of a lease (default
	// Lease/5): the owner stops Margin before its lease ends, and another
	// node declares it dead only Margin after. It absorbs a difference
	// of clock rates of up to Margin/Lease.
	Margin time.Duration
	// Poll is how often the node reads the map (default 250ms, at most
	// Lease/4): a node learns within it that a group was handed to it.
	// The giver answers TRYAGAIN rather than MOVED for twice as long
	// after a hand-over, so that a client is not sent to a node that
	// does not know yet (which would send it back).
	Poll time.Duration
	// WarmRate is the most users a second the node reads back into
	// memory when groups are handed to it: the users their last owner
	// held, which it records at the hand-over (Store.PutWarmUsers),
	// those used last first. 0: no records, no reads.
	WarmRate float64
	Store    Store
	Host     Host
	Logger   *slog.Logger
	// Mono is the monotonic clock leases are timed by (default: the time
	// since New, by the runtime's monotonic clock). The wall clock is
	// never used: a step of it changes nothing.
	Mono func() time.Duration
}

// Verdict is what a node does with a request for a slot.
type Verdict uint8

const (
	Serve    Verdict = iota // this node owns the slot: run the command
	Moved                   // another node owns it: -MOVED slot addr
	TryAgain                // it is moving, or this node's lease lapsed: -TRYAGAIN
	Down                    // no node owns it: -CLUSTERDOWN
)

// Node is one member of the cluster: it registers, renews its lease,
// watches the others', and claims, serves and hands over groups (see the
// package comment). Enter and Exit are its hot path, safe for concurrent
// use; Run is its coordinator, one goroutine.
type Node struct {
	cfg   Config
	log   *slog.Logger
	start time.Time

	view       atomic.Pointer[View]
	validUntil atomic.Int64 // Mono nanoseconds; the lease ends then
	inflight   [Groups]struct {
		n atomic.Int64
		_ [56]byte // one group per cache line
	}
	handedAt [Groups]atomic.Int64 // Mono nanoseconds of the group's last hand-over from here
	wake     chan struct{}        // a round now (cap 1)
	leaving  atomic.Bool
	leftCh   chan struct{} // closed when the node has handed everything over
	leftOnce sync.Once

	// The node's own row, shared by the coordinator and the renewer
	// (renewals must not wait for a hand-over, which can take longer than
	// a lease). mu is held across the writes of the row, so they are
	// never concurrent.
	mu struct {
		sync.Mutex
		self       NodeRow
		registered bool
		lastRenew  time.Duration
		fencedBy   *NodeRow // set by a renewal that found the row declared down
	}
	renewNow chan struct{} // a renewal now (cap 1)
	warmJobs chan warmJob  // groups handed here, for warmLoop (cap Groups)
	// The warm loop's; Run starts it, and Run or Leave stops it (so that
	// no read of it runs once the node leaves: the engine closes then).
	warmCtx    context.Context
	warmCancel context.CancelFunc
	warmDone   chan struct{} // closed when the warm loop has ended (at once with no WarmRate)

	// The coordinator goroutine's own.
	seen      map[string]sighting
	lastWatch time.Duration // Mono of the last successful read of the rows
	moving    [Groups]bool  // handOver runs on these, or left them unsettled
	unsettled [Groups]bool  // a hand-over's write failed: owner unknown
	owned     [Groups]bool  // held by this incarnation at the last publish
}

// warmJob is a group this node began to serve, at epoch.
type warmJob struct {
	group int
	epoch int64
}

// maxWarmUsers bounds the users recorded for one group at a hand-over.
const maxWarmUsers = 1 << 14

// sighting is when this node first saw another's row as it is now.
type sighting struct {
	inc, seq int64
	since    time.Duration
}

// NewNode returns a node; it joins the cluster when Run runs.
func NewNode(cfg Config) (*Node, error) {
	if cfg.ID == "" || cfg.Addr == "" || cfg.Store == nil || cfg.Host == nil {
		return nil, errors.New("cluster: a node needs an ID, an address, a Store and a Host")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 10 * time.Second
	}
	if cfg.Margin <= 0 {
		cfg.Margin = cfg.Lease / 5
	}
	if cfg.Margin*2 >= cfg.Lease {
		return nil, fmt.Errorf("cluster: margin %v must be under half the lease %v", cfg.Margin, cfg.Lease)
	}
	if cfg.Poll <= 0 || cfg.Poll > cfg.Lease/4 {
		cfg.Poll = min(250*time.Millisecond, cfg.Lease/4)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.ID[:min(8, len(cfg.ID))]),
		start:    time.Now(),
		wake:     make(chan struct{}, 1),
		renewNow: make(chan struct{}, 1),
		warmJobs: make(chan warmJob, Groups),
		leftCh:   make(chan struct{}),
		seen:     make(map[string]sighting),
	}
	if n.cfg.Mono == nil {
		n.cfg.Mono = func() time.Duration { return time.Since(n.start) }
	}
	n.warmCtx, n.warmCancel = context.WithCancel(context.Background())
	n.warmDone = make(chan struct{})
	if cfg.WarmRate <= 0 {
		close(n.warmDone)
	}
	empty := &View{self: -1, id: cfg.ID}
	for g := range empty.groups {
		empty.groups[g].owner = -1 // nobody known yet: CLUSTERDOWN until the first map
	}
	n.view.Store(empty)
	return n, nil
}

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// View returns the node's current map of the cluster.
func (n *Node) View() *View { return n.view.Load() }

// Enter is called before a command on slot runs. With Serve the command
// runs, and Exit(slot) must follow it; with Moved, addr is where the slot
// is served.
func (n *Node) Enter(slot int) (v Verdict, addr string) {
	g := GroupOf(slot)
	c := &n.inflight[g].n
	// Counted before the map is read: a hand-over marks the group moving,
	// then waits for the count to fall to zero, so either it sees this
	// command or this command sees the group moving.
	c.Add(1)
	view := n.view.Load()
	gv := &view.groups[g]
	if gv.serving && int64(n.cfg.Mono()) < n.validUntil.Load() {
		return Serve, ""
	}
	c.Add(-1)
	return n.verdict(view, gv, g)
}

// Serves reports whether the node serves user now: its group is its own
// and its lease valid. The engine asks it after a read-through, before
// the operation that waited for it changes anything
// (persist.Engine.SetServes): the lease Enter checked may have ended
// while the database answered.
func (n *Node) Serves(user int64) bool {
	return n.view.Load().groups[UserGroup(user)].serving && int64(n.cfg.Mono()) < n.validUntil.Load()
}

// Exit ends what Enter(slot) began with Serve.
func (n *Node) Exit(slot int) { n.inflight[GroupOf(slot)].n.Add(-1) }

func (n *Node) verdict(view *View, gv *groupView, g int) (Verdict, string) {
	switch {
	case gv.serving || gv.moving:
		if gv.serving {
			n.pokeRenew() // the lease lapsed: renew now
		}
		return TryAgain, ""
	case gv.owner >= 0:
		if at := n.handedAt[g].Load(); at != 0 && n.cfg.Mono()-time.Duration(at) < 2*n.cfg.Poll {
			return TryAgain, "" // the new owner may not know yet
		}
		return Moved, view.nodes[gv.owner].Addr
	default:
		return Down, ""
	}
}

func (n *Node) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *Node) pokeRenew() {
	select {
	case n.renewNow <- struct{}{}:
	default:
	}
}

// Run runs the node's coordinator until ctx ends or Leave has handed
// every group over; it returns ctx's error, or nil after Leave.
func (n *Node) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := n.cfg.Store.Init(ctx)
		if err == nil {
			break
		}
		n.log.Warn("cluster: cannot initialise the coordination tables; retrying", "err", err)
		if !sleep(ctx, backoff(attempt)) {
			return ctx.Err()
		}
	}
	rctx, stopRenewer := context.WithCancel(ctx)
	var renewer sync.WaitGroup
	renewer.Go(func() { n.renewLoop(rctx) })
	defer func() { stopRenewer(); renewer.Wait() }()
	if n.cfg.WarmRate > 0 {
		go n.runWarm()
		defer n.stopWarm()
	}
	tick := time.NewTicker(n.cfg.Poll)
	defer tick.Stop()
	for {
		if done := n.round(ctx); done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		case <-n.wake:
		}
	}
}

// Leave hands every group of the node over to the others (or releases
// it, if none is up), writing their read states first, and marks the
// node down; Run then returns. It returns when that is done or ctx ends.
func (n *Node) Leave(ctx context.Context) error {
	n.leaving.Store(true)
	// No warm-up read may run once the node has left (the engine closes
	// then); a cancelled read returns at once.
	n.warmCancel()
	select {
	case <-n.warmDone:
	case <-ctx.Done(): // Run never started it
	}
	n.poke()
	select {
	case <-n.leftCh:
		// Still answering for a moment: a client that sends here now is
		// redirected (and reloads its map) rather than refused.
		sleep(ctx, 2*n.cfg.Poll)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: leave: %w (%d groups not handed over)", ctx.Err(), n.View().Mine())
	}
}

// runWarm runs warmLoop until stopWarm.
func (n *Node) runWarm() {
	defer close(n.warmDone)
	n.warmLoop(n.warmCtx)
}

// stopWarm ends the warm loop and waits for its reads under way (a
// cancelled read returns at once, and fills nothing).
func (n *Node) stopWarm() {
	n.warmCancel()
	<-n.warmDone
}

// warmLoop reads back the users recorded for the groups handed to this
// node, as they come, until ctx ends. Each user is read only while the
// node serves its group, and counts as a command on it (Enter), so a
// hand-over of the group waits for the read.
func (n *Node) warmLoop(ctx context.Context) {
	for {
		var jobs []warmJob
		select {
		case <-ctx.Done():
			return
		case j := <-n.warmJobs:
			jobs = append(jobs, j)
		}
		for len(jobs) < Groups && len(n.warmJobs) > 0 {
			jobs = append(jobs, <-n.warmJobs)
		}
		var users []int64
		for _, j := range jobs {
			us, err := n.cfg.Store.WarmUsers(ctx, j.group, j.epoch)
			if err != nil {
				n.log.Warn("cluster: cannot read the users recorded for a group; they are read on demand", "group", j.group, "err", err)
				continue
			}
			users = append(users, us...)
		}
		if len(users) == 0 {
			continue
		}
		read, failed := n.cfg.Host.Warm(ctx, users, n.cfg.WarmRate, n.enterUser)
		n.log.Info("cluster: users of the groups handed here read back", "groups", len(jobs), "listed", len(users),
			"users_read", read, "failed", failed)
	}
}

// enterUser is Enter for user's slot, as warmLoop's guard.
func (n *Node) enterUser(user int64) (exit func(), ok bool) {
	slot := UserSlot(user)
	if v, _ := n.Enter(slot); v != Serve {
		return nil, false
	}
	return func() { n.Exit(slot) }, true
}

// renewLoop renews the lease every Lease/4, or at once when asked
// (pokeRenew), until ctx ends.
func (n *Node) renewLoop(ctx context.Context) {
	tick := time.NewTicker(n.cfg.Lease / 8)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			n.renewIfDue(ctx, false)
		case <-n.renewNow:
			n.renewIfDue(ctx, true)
		}
	}
}

// selfRow returns the node's row, and whether it is registered.
func (n *Node) selfRow() (NodeRow, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.self, n.mu.registered
}

// round is one pass of the coordinator: read the map, watch the others,
// publish, rebalance (the renewer renews meanwhile). It reports whether
// the node has left.
func (n *Node) round(ctx context.Context) bool {
	n.mu.Lock()
	fb := n.mu.fencedBy
	n.mu.fencedBy = nil
	n.mu.Unlock()
	if fb != nil {
		n.fenced(*fb)
	}
	if _, registered := n.selfRow(); !registered {
		if err := n.register(ctx); err != nil {
			n.log.Warn("cluster: cannot register", "err", err)
			return false
		}
	}
	if self, _ := n.selfRow(); n.leaving.Load() && self.State != StateLeaving {
		// The others must see it leaving before it hands anything over,
		// or they would hand groups back to it.
		n.renewIfDue(ctx, true)
	}
	rows, err := n.cfg.Store.Nodes(ctx)
	// Dated after the read: a renewal that landed while it ran must not
	// count as older than it is.
	readAt := n.cfg.Mono()
	if err != nil {
		n.log.Warn("cluster: cannot read the nodes", "err", err)
		return false
	}
	groups, err := n.cfg.Store.Groups(ctx)
	if err != nil {
		n.log.Warn("cluster: cannot read the groups", "err", err)
		return false
	}
	n.settle(ctx, &groups)
	rows = n.watch(ctx, rows, readAt)
	n.publish(rows, &groups, readAt)
	if int64(n.cfg.Mono()) >= n.validUntil.Load() {
		return false // no lease: no claim, no hand-over
	}
	if self, _ := n.selfRow(); n.leaving.Load() && self.State != StateLeaving {
		return false
	}
	n.rebalance(ctx, rows, &groups)
	if n.leaving.Load() && n.View().Mine() == 0 {
		return n.leave(ctx)
	}
	return false
}

// register writes a new incarnation of the node's row. The stamp it
// publishes never falls below the row's: the fences of the others are
// computed from it.
func (n *Node) register(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	row := NodeRow{ID: n.cfg.ID, Addr: n.cfg.Addr, Incarnation: 1, Seq: 1, State: StateUp, StampHW: n.cfg.Host.HighStamp()}
	cur, found, err := n.cfg.Store.Node(ctx, n.cfg.ID)
	if err != nil {
		return err
	}
	var prev *NodeRow
	if found {
		row.Incarnation, row.Seq, row.StampHW, prev = cur.Incarnation+1, cur.Seq+1, max(row.StampHW, cur.StampHW), &cur
	}
	t0 := n.cfg.Mono()
	if _, ok, err := n.cfg.Store.PutNode(ctx, row, prev); err != nil || !ok {
		return cmpErr(err, errors.New("the node's row changed while it registered"))
	}
	n.mu.self, n.mu.registered, n.mu.lastRenew = row, true, t0
	n.validUntil.Store(int64(t0 + n.cfg.Lease - n.cfg.Margin))
	n.log.Info("cluster: registered", "incarnation", row.Incarnation, "addr", row.Addr)
	return nil
}

// renewIfDue renews the lease if Lease/4 has passed since the last
// renewal, or the lease lapsed, or force. It reports whether the lease
// was renewed. A renewal that finds the row declared down leaves it to
// the coordinator (fenced).
func (n *Node) renewIfDue(ctx context.Context, force bool) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.mu.registered || n.mu.fencedBy != nil {
		return false
	}
	now := n.cfg.Mono()
	if !force && now-n.mu.lastRenew < n.cfg.Lease/4 && int64(now) < n.validUntil.Load() {
		return false
	}
	return n.renewLocked(ctx)
}

func (n *Node) renewLocked(ctx context.Context) bool {
	self := n.mu.self
	row := self
	row.Seq++
	row.StampHW = max(n.cfg.Host.HighStamp(), self.StampHW)
	row.Addr = n.cfg.Addr
	if n.leaving.Load() {
		row.State = StateLeaving
	}
	t0 := n.cfg.Mono()
	cur, ok, err := n.cfg.Store.PutNode(ctx, row, &self)
	if err != nil {
		n.log.Warn("cluster: cannot renew the lease", "err", err, "serving_for", time.Duration(n.validUntil.Load())-t0)
		return false // the lease runs out by itself
	}
	if !ok && cur.Incarnation == self.Incarnation && cur.State != StateDown && cur.Seq > self.Seq {
		// An earlier renewal whose answer was lost did land: only this
		// node changes its row while it is not down.
		n.mu.self = cur
		return n.renewLocked(ctx)
	}
	if !ok {
		n.validUntil.Store(0)
		n.mu.fencedBy = &cur
		n.poke()
		return false
	}
	n.mu.self, n.mu.lastRenew = row, t0
	n.validUntil.Store(int64(t0 + n.cfg.Lease - n.cfg.Margin))
	return true
}

// fenced: another node declared this one down (its lease had lapsed, by
// that node's clock). Everything it held may have been taken: it stops
// serving, drops every read state it holds, and registers again.
func (n *Node) fenced(cur NodeRow) {
	self, _ := n.selfRow()
	n.log.Error("cluster: this node was declared down by another (its lease lapsed); dropping its read states and joining again",
		"incarnation", self.Incarnation, "stored_state", cur.State)
	n.validUntil.Store(0)
	// Nothing is its own any more, and it cannot know who holds what
	// until it reads the map again: CLUSTERDOWN meanwhile, not a MOVED
	// that might name itself.
	v := *n.view.Load()
	for g := range v.groups {
		v.groups[g] = groupView{owner: -1}
	}
	n.view.Store(&v)
	// A load still under way after this (one that outlives the wait)
	// fills nothing it read: Discard abandons it. What a lingering
	// command loads later, the Discard in publish drops (or abandons)
	// before the node serves those users again.
	n.waitIdle(func(int) bool { return true }, n.cfg.Lease)
	// Its unwritten changes are written if they can be: below the new
	// owners' fences, they land only where no newer value is. Then
	// nothing it kept may be served again.
	all := func(int64) bool { return true }
	rctx, cancel := context.WithTimeout(context.Background(), n.cfg.Lease)
	err := n.cfg.Host.Release(rctx, all)
	cancel()
	dropped := n.cfg.Host.Discard(all)
	n.log.Warn("cluster: read states dropped", "read_states", dropped, "unwritten_kept", err != nil, "err", err)
	n.mu.Lock()
	n.mu.registered = false
	n.mu.Unlock()
	n.moving, n.owned, n.unsettled = [Groups]bool{}, [Groups]bool{}, [Groups]bool{}
}

// settle learns the owner of the groups whose hand-over write failed; a
// group stays unserved until it is known still to be this node's.
func (n *Node) settle(ctx context.Context, groups *[Groups]GroupRow) {
	for g := range n.unsettled {
		if !n.unsettled[g] {
			continue
		}
		cur, err := n.cfg.Store.Group(ctx, g)
		if err != nil {
			continue
		}
		groups[g] = cur
		n.unsettled[g], n.moving[g] = false, false
	}
}

// watch notes when each other node's row last changed and declares down
// those whose row has not changed for Lease+Margin by this node's clock.
// It returns rows with those marked down.
func (n *Node) watch(ctx context.Context, rows []NodeRow, now time.Duration) []NodeRow {
	if n.lastWatch != 0 && now-n.lastWatch > n.cfg.Lease/2 {
		// This node could not read the rows for a while: the store was
		// out of its reach, maybe of everyone's (an outage of Cassandra).
		// What it did not see is not silence: every node gets a whole
		// lease and margin, from now, to renew.
		for id, s := range n.seen {
			s.since = now
			n.seen[id] = s
		}
	}
	n.lastWatch = now
	for i := range rows {
		r := &rows[i]
		if r.ID == n.cfg.ID || r.State == StateDown {
			continue
		}
		s, ok := n.seen[r.ID]
		if !ok || s.inc != r.Incarnation || s.seq != r.Seq {
			n.seen[r.ID] = sighting{inc: r.Incarnation, seq: r.Seq, since: now}
			continue
		}
		if now-s.since <= n.cfg.Lease+n.cfg.Margin || int64(n.cfg.Mono()) >= n.validUntil.Load() {
			continue // not silent long enough, or this node is not sure of itself
		}
		down := *r
		down.State, down.Seq = StateDown, r.Seq+1
		cur, ok, err := n.cfg.Store.PutNode(ctx, down, r)
		switch {
		case err != nil:
			n.log.Warn("cluster: cannot declare a silent node down", "peer", r.ID, "err", err)
		case ok:
			n.log.Warn("cluster: declared a silent node down", "peer", r.ID, "addr", r.Addr, "silent_for", now-s.since)
			*r = down
		default:
			*r = cur // it renewed after all
		}
	}
	return rows
}

// live reports whether r counts for the balance: up, and renewing.
func (n *Node) live(r *NodeRow) bool {
	if r.ID == n.cfg.ID {
		self, registered := n.selfRow()
		return registered && !n.leaving.Load() && r.Incarnation == self.Incarnation
	}
	return r.State == StateUp
}

// holds reports whether the group's owner holds it: the owner's row is
// up or leaving, in the incarnation that claimed the group.
func holds(rows []NodeRow, gr *GroupRow) (*NodeRow, bool) {
	if gr.Owner == "" {
		return nil, false
	}
	for i := range rows {
		if r := &rows[i]; r.ID == gr.Owner {
			return r, r.Incarnation == gr.Incarnation && r.State != StateDown
		}
	}
	return nil, false
}

// publish makes the map that Enter reads. A group handed to this node is
// emptied of any read state this node kept from an earlier ownership
// before it is served.
func (n *Node) publish(rows []NodeRow, groups *[Groups]GroupRow, readAt time.Duration) {
	self, registered := n.selfRow()
	v := &View{readAt: readAt, self: -1, id: n.cfg.ID}
	for i := range rows {
		r := &rows[i]
		if r.State == StateDown && r.ID != n.cfg.ID {
			continue
		}
		if r.ID == n.cfg.ID {
			v.self = len(v.nodes)
		}
		v.nodes = append(v.nodes, *r)
	}
	var fresh []int
	for g := range groups {
		gr := &groups[g]
		gv := &v.groups[g]
		gv.owner, gv.epoch = -1, gr.Epoch
		v.epoch = max(v.epoch, gr.Epoch)
		for i := range v.nodes {
			if v.nodes[i].ID == gr.Owner {
				gv.owner = i
			}
		}
		if _, ok := holds(rows, gr); ok {
			gv.held = true
		}
		gv.assigned = gr.Owner != ""
		mine := registered && gr.Owner == n.cfg.ID && gr.Incarnation == self.Incarnation
		gv.moving = mine && n.moving[g]
		gv.serving = mine && !n.moving[g]
		if mine && !n.owned[g] {
			fresh = append(fresh, g)
		}
		n.owned[g] = mine
	}
	if len(fresh) > 0 {
		// Not served since it last left this node (if ever): what this
		// node kept of it may be stale, and a command that outlived a
		// fence may still be loading some of it (Discard abandons that).
		in := make(groupSet, len(fresh))
		for _, g := range fresh {
			in[g] = true
		}
		n.cfg.Host.Discard(func(u int64) bool { return in.has(UserGroup(u)) })
		n.log.Info("cluster: serving groups", "groups", len(fresh), "first", fresh[0])
	}
	n.view.Store(v)
	if n.cfg.WarmRate > 0 {
		// After the view: the warm loop reads a user only while it is served.
		for _, g := range fresh {
			select {
			case n.warmJobs <- warmJob{group: g, epoch: groups[g].Epoch}:
			default: // a full queue (groups coming and going fast): read on demand
			}
		}
	}
}

// rebalance moves the node toward its fair share of the groups: it hands
// the groups it holds above its share to the nodes below theirs (all of
// them, if it is leaving), and claims its part of the groups nobody
// holds. Every node computes the same plan from the same map;
// compare-and-set settles the races of different maps.
func (n *Node) rebalance(ctx context.Context, rows []NodeRow, groups *[Groups]GroupRow) {
	p := plan(n.cfg.ID, rows, groups, n.live)
	if len(p.give) > 0 {
		n.handOver(ctx, p.give, groups, rows)
	}
	if len(p.claim) > 0 {
		n.claim(ctx, p.claim, groups, rows)
	}
}

// handOver gives groups to other nodes (to[g]; "" releases the group):
// it stops serving them, waits for the commands running on them, writes
// every change and drops their read states, then writes the new owner.
func (n *Node) handOver(ctx context.Context, give map[int]string, groups *[Groups]GroupRow, rows []NodeRow) {
	set := make(groupSet, len(give))
	for g := range give {
		set[g] = true
		n.moving[g] = true
	}
	defer func() {
		// Postponed or done: what stays here is served again at once.
		for g := range give {
			n.moving[g] = n.unsettled[g]
		}
		n.republish()
	}()
	n.republish()
	if !n.waitIdle(set.has, n.cfg.Lease) {
		n.log.Warn("cluster: hand-over postponed: commands still running on the groups", "groups", len(give))
		return
	}
	// Who the groups' users are goes with them (WarmRate), before Release
	// drops them, those used last first.
	var warm map[int][]int64
	if n.cfg.WarmRate > 0 {
		warm = make(map[int][]int64, len(give))
		for _, u := range n.cfg.Host.CachedUsers(func(u int64) bool { return set.has(UserGroup(u)) }) {
			if g := UserGroup(u); len(warm[g]) < maxWarmUsers {
				warm[g] = append(warm[g], u)
			}
		}
	}
	rctx, cancel := context.WithTimeout(ctx, n.cfg.Lease)
	err := n.cfg.Host.Release(rctx, func(u int64) bool { return set.has(UserGroup(u)) })
	cancel()
	if err != nil {
		n.log.Warn("cluster: hand-over postponed: the read states could not be written", "groups", len(give), "err", err)
		return
	}
	n.recordUsers(ctx, give, groups, warm)
	moved := 0
	for g, to := range give {
		row := GroupRow{Owner: to, Epoch: groups[g].Epoch + 1}
		if to != "" {
			for i := range rows {
				if rows[i].ID == to {
					row.Incarnation = rows[i].Incarnation
				}
			}
		}
		cur, ok, err := n.cfg.Store.PutGroup(ctx, g, row, groups[g])
		switch {
		case err != nil:
			// It may have moved or not: not served until settled.
			n.log.Warn("cluster: cannot write a group's new owner", "group", g, "err", err)
			n.unsettled[g] = true
		case ok:
			groups[g] = row
			n.handedAt[g].Store(int64(n.cfg.Mono()))
			moved++
		default:
			groups[g] = cur
		}
	}
	n.publishGroups(rows, groups)
	n.log.Info("cluster: groups handed over", "groups", moved, "of", len(give))
}

// recordUsers records, for each group given to a node, the users this
// node held in it, for the new owner to read at the group's next epoch;
// a hand-over that does not happen leaves a record nobody reads. A hint,
// so the records are written concurrently, with little time each, while
// the groups are not served.
func (n *Node) recordUsers(ctx context.Context, give map[int]string, groups *[Groups]GroupRow, warm map[int][]int64) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Poll)
	defer cancel()
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
		sem    = make(chan struct{}, 16)
	)
	for g, to := range give {
		if users := warm[g]; len(users) > 0 && to != "" {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if err := n.cfg.Store.PutWarmUsers(ctx, g, groups[g].Epoch+1, users); err != nil && failed.Add(1) == 1 {
					n.log.Warn("cluster: cannot record a group's users for its new owner; they are read on demand", "group", g, "err", err)
				}
			})
		}
	}
	wg.Wait()
}

// claim takes groups nobody holds. A group whose last owner did not hand
// it over may still get that owner's late writes (a paused process, a
// partitioned one): this node first fences its stamps above everything
// that owner could have stamped.
func (n *Node) claim(ctx context.Context, claim []int, groups *[Groups]GroupRow, rows []NodeRow) {
	taken := false
	var fence int64
	for _, g := range claim {
		taken = taken || groups[g].Owner != "" // not never owned, nor released after a hand-over
	}
	for i := range rows {
		fence = max(fence, rows[i].StampHW)
	}
	if taken {
		// Above every stamp any node published (a stamp loaded from a
		// row another node wrote is one of those, give or take what it
		// issued since its last renewal), and published itself before
		// any of these groups is served, so the next fence covers it.
		n.cfg.Host.Fence(fence + FenceGap)
		if !n.renewIfDue(ctx, true) {
			return
		}
	}
	self, _ := n.selfRow()
	won := 0
	for _, g := range claim {
		row := GroupRow{Owner: n.cfg.ID, Incarnation: self.Incarnation, Epoch: groups[g].Epoch + 1}
		cur, ok, err := n.cfg.Store.PutGroup(ctx, g, row, groups[g])
		switch {
		case err != nil:
			n.log.Warn("cluster: cannot claim a group", "group", g, "err", err)
		case ok:
			groups[g] = row
			won++
		default:
			groups[g] = cur
		}
	}
	n.publishGroups(rows, groups)
	if won > 0 {
		n.log.Info("cluster: groups claimed", "groups", won, "of", len(claim))
	}
}

// leave marks the node down once it holds nothing, so that no other node
// waits for its lease to lapse. It reports whether the node has left.
func (n *Node) leave(ctx context.Context) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	row := n.mu.self
	row.Seq++
	row.State = StateDown
	row.StampHW = max(n.cfg.Host.HighStamp(), row.StampHW)
	if _, ok, err := n.cfg.Store.PutNode(ctx, row, &n.mu.self); err != nil || !ok {
		n.log.Warn("cluster: cannot mark the node down as it leaves", "err", err)
		return false
	}
	n.mu.self = row
	n.validUntil.Store(0)
	n.leftOnce.Do(func() { close(n.leftCh) })
	n.log.Info("cluster: left")
	return true
}

func (n *Node) republish() {
	v := *n.view.Load()
	for g := range v.groups {
		gv := &v.groups[g]
		if gv.serving || gv.moving {
			gv.moving, gv.serving = n.moving[g], !n.moving[g]
		}
	}
	n.view.Store(&v)
}

func (n *Node) publishGroups(rows []NodeRow, groups *[Groups]GroupRow) {
	n.publish(rows, groups, n.view.Load().readAt)
}

// waitIdle waits until no command runs on the groups in, at most d.
func (n *Node) waitIdle(in func(int) bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		busy := false
		for g := range n.inflight {
			if in(g) && n.inflight[g].n.Load() > 0 {
				busy = true
				break
			}
		}
		if !busy {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

type groupSet map[int]bool

func (s groupSet) has(g int) bool { return s[g] }

func cmpErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

func backoff(attempt int) time.Duration {
	return min(100*time.Millisecond<<min(attempt, 6), 5*time.Second)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sortedIDs returns the ids of rows that keep, sorted.
func sortedIDs(rows []NodeRow, keep func(*NodeRow) bool) []string {
	var ids []string
	for i := range rows {
		if keep(&rows[i]) {
			ids = append(ids, rows[i].ID)
		}
	}
	slices.Sort(ids)
	return ids
}
