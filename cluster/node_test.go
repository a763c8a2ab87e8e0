package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// memStore is Store in memory, linearizable by one lock, for the logic
// tests of the protocol; the Cassandra Coordinator is tested against a
// real node (tests/cluster_test.go).
type memStore struct {
	mu     sync.Mutex
	nodes  map[string]NodeRow
	groups [Groups]GroupRow
	warm   map[int]warmJob // group -> the epoch of its users record
	users  map[int][]int64 // group -> the users recorded
	down   bool            // every call fails, as with Cassandra unreachable
}

func newMemStore() *memStore {
	return &memStore{nodes: map[string]NodeRow{}, warm: map[int]warmJob{}, users: map[int][]int64{}}
}

var errDown = fmt.Errorf("store unreachable")

func (m *memStore) Init(context.Context) error { return nil }

func (m *memStore) Node(_ context.Context, id string) (NodeRow, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return NodeRow{}, false, errDown
	}
	r, ok := m.nodes[id]
	return r, ok, nil
}

func (m *memStore) Nodes(context.Context) ([]NodeRow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, errDown
	}
	var rows []NodeRow
	for _, r := range m.nodes {
		rows = append(rows, r)
	}
	return rows, nil
}

func (m *memStore) PutNode(_ context.Context, row NodeRow, prev *NodeRow) (NodeRow, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return NodeRow{}, false, errDown
	}
	cur, ok := m.nodes[row.ID]
	if (prev == nil && ok) || (prev != nil && (!ok || cur.Incarnation != prev.Incarnation || cur.Seq != prev.Seq)) {
		return cur, false, nil
	}
	m.nodes[row.ID] = row
	return row, true, nil
}

func (m *memStore) Groups(context.Context) ([Groups]GroupRow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return [Groups]GroupRow{}, errDown
	}
	return m.groups, nil
}

func (m *memStore) PutGroup(_ context.Context, g int, row, prev GroupRow) (GroupRow, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return GroupRow{}, false, errDown
	}
	if m.groups[g].Epoch != prev.Epoch || row.Epoch <= prev.Epoch {
		return m.groups[g], false, nil
	}
	m.groups[g] = row
	return row, true, nil
}

func (m *memStore) Group(_ context.Context, g int) (GroupRow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return GroupRow{}, errDown
	}
	return m.groups[g], nil
}

func (m *memStore) PutWarmUsers(_ context.Context, g int, epoch int64, users []int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errDown
	}
	m.warm[g], m.users[g] = warmJob{group: g, epoch: epoch}, slices.Clone(users)
	return nil
}

func (m *memStore) WarmUsers(_ context.Context, g int, epoch int64) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, errDown
	}
	if m.warm[g].epoch != epoch {
		return nil, nil
	}
	return slices.Clone(m.users[g]), nil
}

// fakeHost records what a node asks of its read states.
type fakeHost struct {
	mu        sync.Mutex
	stamp     int64
	released  map[int]int // group -> releases
	discarded int
	fence     int64
	failWrite bool
	cached    []int64 // CachedUsers, in this order
	warmed    []int64 // the users Warm read, guard permitting
}

func (h *fakeHost) CachedUsers(users func(int64) bool) []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []int64
	for _, u := range h.cached {
		if users(u) {
			out = append(out, u)
		}
	}
	return out
}

func (h *fakeHost) Warm(ctx context.Context, users []int64, _ float64, guard func(int64) (func(), bool)) (read, failed int) {
	for _, u := range users {
		exit, ok := guard(u)
		if !ok {
			continue
		}
		h.mu.Lock()
		h.warmed = append(h.warmed, u)
		h.mu.Unlock()
		exit()
		read++
	}
	return read, 0
}

func newFakeHost() *fakeHost { return &fakeHost{stamp: 1000, released: map[int]int{}} }

func (h *fakeHost) Release(_ context.Context, users func(int64) bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failWrite {
		return fmt.Errorf("store unreachable")
	}
	for g := range Groups {
		if users(userOfGroup(g)) {
			h.released[g]++
		}
	}
	return nil
}

func (h *fakeHost) Discard(func(int64) bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.discarded++
	return 0
}

func (h *fakeHost) Fence(s int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fence = max(h.fence, s)
	h.stamp = max(h.stamp, s)
}

func (h *fakeHost) HighStamp() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stamp += 10 // it keeps stamping between renewals
	return h.stamp
}

// userOfGroup finds a user whose slot is in group g.
func userOfGroup(g int) int64 {
	for u := int64(0); ; u++ {
		if UserGroup(u) == g {
			return u
		}
	}
}

// testCluster is nodes over one memStore on one fake monotonic clock;
// the test runs their rounds by hand.
type testCluster struct {
	t        *testing.T
	store    *memStore
	now      time.Duration
	nodes    []*Node
	hosts    []*fakeHost
	warmRate float64 // Config.WarmRate of the nodes added
}

const testLease = 10 * time.Second

func newTestCluster(t *testing.T, n int) *testCluster {
	c := &testCluster{t: t, store: newMemStore()}
	for range n {
		c.add()
	}
	return c
}

func (c *testCluster) add() *Node {
	i := len(c.nodes)
	h := newFakeHost()
	n, err := NewNode(Config{
		ID: fmt.Sprintf("%040x", i+1), Addr: fmt.Sprintf("127.0.0.1:%d", 7000+i),
		Lease: testLease, Store: c.store, Host: h, WarmRate: c.warmRate,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Mono:   func() time.Duration { return c.now },
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes, c.hosts = append(c.nodes, n), append(c.hosts, h)
	return n
}

// rounds advances the clock by a renewal period per round and runs a
// round of every node in run (all when nil).
func (c *testCluster) rounds(k int, run ...*Node) {
	if run == nil {
		run = c.nodes
	}
	for range k {
		c.now += testLease / 4
		for _, n := range run {
			n.renewIfDue(context.Background(), false) // the renewer's part
			n.round(context.Background())
		}
	}
}

// owners counts the groups each node serves, and checks that no group is
// served by two nodes.
func (c *testCluster) owners() map[string]int {
	c.t.Helper()
	count := map[string]int{}
	for g := range Groups {
		servers := 0
		for _, n := range c.nodes {
			gv := n.View().groups[g]
			if gv.serving && int64(c.now) < n.validUntil.Load() {
				servers++
				count[n.ID()]++
			}
		}
		if servers > 1 {
			c.t.Fatalf("group %d is served by %d nodes", g, servers)
		}
	}
	return count
}

func (c *testCluster) wantBalanced(ids ...string) {
	c.t.Helper()
	count := c.owners()
	total := 0
	for _, id := range ids {
		if n := count[id]; n < Groups/len(ids) || n > Groups/len(ids)+1 {
			c.t.Fatalf("node %s… serves %d groups, want a fair share of %d over %d nodes (all: %v)", id[:8], n, Groups, len(ids), count)
		}
		total += count[id]
	}
	if total != Groups {
		c.t.Fatalf("%d groups served, want %d (%v)", total, Groups, count)
	}
}

func ids(nodes ...*Node) []string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.ID())
	}
	return s
}

func TestSlot(t *testing.T) {
	for key, want := range map[string]int{
		"123456789": 0x31C3, // CRC-16/XMODEM's check value
		"foo":       12182,  // CLUSTER KEYSLOT of Redis 7
		"bar":       5061,
		"hello":     866,
	} {
		if got := Slot([]byte(key)); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	same := [][2]string{
		{"{user1000}.following", "{user1000}.followers"},
		{"foo{bar}{zap}", "bar"},
		{"foo{{bar}}zap", "{bar"},
	}
	for _, p := range same {
		if Slot([]byte(p[0])) != Slot([]byte(p[1])) {
			t.Errorf("Slot(%q) != Slot(%q): hash tags", p[0], p[1])
		}
	}
	if Slot([]byte("foo{}{bar}")) == Slot([]byte("bar")) {
		t.Error(`"foo{}{bar}": an empty tag hashes the whole key`)
	}
	if UserSlot(42) != Slot([]byte("42")) || UserSlot(42) == Slot([]byte("042")) {
		t.Error("UserSlot: the slot of the decimal without leading zeros")
	}
}

func TestSlotAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { UserSlot(1234567890123) }); n != 0 {
		t.Fatalf("UserSlot allocates %v times", n)
	}
}

// TestBeforeTheFirstMap: a node asked for a slot before it has read the
// map answers CLUSTERDOWN (it knows no owner), and serves nothing.
func TestBeforeTheFirstMap(t *testing.T) {
	c := newTestCluster(t, 1)
	for _, slot := range []int{0, 5000, Slots - 1} {
		if v, _ := c.nodes[0].Enter(slot); v != Down {
			t.Fatalf("slot %d before the first map: verdict %d, want Down", slot, v)
		}
	}
}

// TestConverge: three nodes started together share the groups fairly
// within a few renewal periods, each group served by one, and agree on
// the map: a request anywhere is served or redirected to the server.
func TestConverge(t *testing.T) {
	c := newTestCluster(t, 3)
	c.rounds(4)
	c.wantBalanced(ids(c.nodes...)...)
	for slot := 0; slot < Slots; slot += 97 {
		served := 0
		var owner string
		for _, n := range c.nodes {
			if v, _ := n.Enter(slot); v == Serve {
				served++
				owner = n.cfg.Addr
				n.Exit(slot)
			}
		}
		if served != 1 {
			t.Fatalf("slot %d served by %d nodes", slot, served)
		}
		for _, n := range c.nodes {
			if v, addr := n.Enter(slot); v == Moved && addr != owner {
				t.Fatalf("slot %d: MOVED to %s, served by %s", slot, addr, owner)
			}
		}
	}
	for _, n := range c.nodes {
		if len(n.View().Ranges()) == 0 || n.View().Held() != Groups {
			t.Fatalf("node %s… sees %d groups held", n.ID()[:8], n.View().Held())
		}
	}
}

// TestJoinAndLeave: a fourth node joins and gets its share by hand-overs
// (the givers write their read states first); a node that leaves hands
// everything over and is marked down.
func TestJoinAndLeave(t *testing.T) {
	c := newTestCluster(t, 3)
	c.rounds(4)
	d := c.add()
	c.rounds(6)
	c.wantBalanced(ids(c.nodes...)...)
	released := 0
	for _, h := range c.hosts[:3] {
		for _, n := range h.released {
			released += n
		}
	}
	if released < Groups/4 {
		t.Fatalf("%d groups released by the givers, want at least %d (the newcomer's share)", released, Groups/4)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- d.Leave(ctx)
	}()
	for deadline := time.Now().Add(5 * time.Second); !d.leaving.Load(); {
		if time.Now().After(deadline) {
			t.Fatal("Leave did not start")
		}
		time.Sleep(time.Millisecond)
	}
	c.rounds(6)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.wantBalanced(ids(c.nodes[:3]...)...)
	if r, _, _ := c.store.Node(context.Background(), d.ID()); r.State != StateDown {
		t.Fatalf("a node that left is %q, want down", r.State)
	}
}

// TestHandOverCarriesUsers: a node that hands groups over records the
// users of each that it held, in its order, for the new owner's epoch;
// the new owner reads back exactly those, each while it serves the
// user's group.
func TestHandOverCarriesUsers(t *testing.T) {
	c := &testCluster{t: t, store: newMemStore(), warmRate: 1000}
	a := c.add()
	// Two users in every group, the second used last.
	for g := range Groups {
		u := userOfGroup(g)
		second := u + 1
		for UserGroup(second) != g {
			second++
		}
		c.hosts[0].cached = append(c.hosts[0].cached, second, u)
	}
	c.rounds(4)
	b := c.add()
	c.rounds(6)
	c.wantBalanced(a.ID(), b.ID())
	var want []int64
	for g := range Groups {
		if c.store.groups[g].Owner != b.ID() {
			continue
		}
		rec, users := c.store.warm[g], c.store.users[g]
		if rec.epoch != c.store.groups[g].Epoch || len(users) != 2 || UserGroup(users[0]) != g || users[1] != userOfGroup(g) {
			t.Fatalf("group %d handed over: users %v recorded at epoch %d, want its 2 users in the giver's order at epoch %d",
				g, users, rec.epoch, c.store.groups[g].Epoch)
		}
		want = append(want, users...)
	}
	if len(want) < Groups {
		t.Fatalf("%d users recorded, want two per group of the newcomer's share", len(want))
	}
	go b.runWarm()
	h := c.hosts[1]
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		h.mu.Lock()
		n := len(h.warmed)
		h.mu.Unlock()
		if n >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d users read back", n, len(want))
		}
	}
	b.stopWarm()
	slices.Sort(want)
	got := slices.Clone(h.warmed)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("the newcomer read back %d users, want the %d recorded for its groups", len(got), len(want))
	}
	for g := range Groups {
		if b.inflight[g].n.Load() != 0 {
			t.Fatalf("group %d: a read back left a command counted", g)
		}
	}
}

// TestCrashTakeover: a node that stops renewing loses its groups to the
// others once Lease+Margin has passed by their clocks, not before; they
// fence their stamps above the highest it published.
func TestCrashTakeover(t *testing.T) {
	c := newTestCluster(t, 3)
	c.rounds(4)
	dead := c.nodes[2]
	var hw int64
	for _, r := range c.store.nodes {
		hw = max(hw, r.StampHW)
	}
	live := c.nodes[:2]
	// Within the lease and margin, nobody takes its groups.
	c.rounds(int((testLease+dead.cfg.Margin)/(testLease/4)), live...)
	if n := c.owners()[dead.ID()]; n != 0 {
		t.Fatalf("the dead node still serves %d groups by its own lease (its clock is shared here)", n)
	}
	c.rounds(4, live...)
	c.wantBalanced(ids(live...)...)
	for i, h := range c.hosts[:2] {
		if h.fence < hw+FenceGap {
			t.Fatalf("node %d fenced at %d, want above %d + FenceGap", i, h.fence, hw)
		}
	}
	if r := c.store.nodes[dead.ID()]; r.State != StateDown {
		t.Fatalf("the silent node is %q, want down", r.State)
	}
}

// TestZombie: a paused node resumes after the others took its groups: it
// serves none of them (its lease lapsed), learns it was declared down,
// drops what it held, registers again and gets a fair share back.
func TestZombie(t *testing.T) {
	c := newTestCluster(t, 3)
	c.rounds(4)
	z := c.nodes[2]
	var zslot int
	for slot := range Slots {
		if z.View().groups[GroupOf(slot)].serving {
			zslot = slot
			break
		}
	}
	c.rounds(12, c.nodes[:2]...)
	if v, _ := z.Enter(zslot); v == Serve {
		t.Fatal("a paused node whose lease lapsed serves its old slot")
	}
	discards := c.hosts[2].discarded
	c.rounds(1, z)
	if c.hosts[2].discarded == discards {
		t.Fatal("the zombie did not drop its read states")
	}
	if v, _ := z.Enter(zslot); v == Serve {
		t.Fatal("the zombie serves a slot it lost")
	}
	c.rounds(8)
	c.wantBalanced(ids(c.nodes...)...)
}

// TestStoreOutage: shorter than the lease, nothing changes; longer, the
// nodes stop serving (their leases lapse) and take their groups back by
// themselves when the store returns.
func TestStoreOutage(t *testing.T) {
	c := newTestCluster(t, 3)
	c.rounds(4)
	c.store.down = true
	c.rounds(2)
	c.wantBalanced(ids(c.nodes...)...)
	c.rounds(6)
	if n := len(c.owners()); n != 0 {
		t.Fatalf("%d nodes serve with their leases lapsed", n)
	}
	c.store.down = false
	c.rounds(10)
	c.wantBalanced(ids(c.nodes...)...)
}

// TestStoreOutageNobodyDeclaredDown: when the store comes back after an
// outage longer than lease + margin, no node declares another down for
// the silence it could not see: each renews, and keeps what it held
// (its unwritten changes with it).
func TestStoreOutageNobodyDeclaredDown(t *testing.T) {
	c := newTestCluster(t, 3)
	c.rounds(4)
	// Node 0 sees the others' last renewals before the outage.
	c.nodes[0].round(context.Background())
	before := c.owners()
	var discards []int
	for _, h := range c.hosts {
		discards = append(discards, h.discarded)
	}
	c.store.down = true
	c.rounds(12)
	c.store.down = false
	c.rounds(3)
	for id, r := range c.store.nodes {
		if r.State != StateUp {
			t.Fatalf("node %s… is %q after the outage, want up", id[:8], r.State)
		}
	}
	for i, h := range c.hosts {
		if h.discarded != discards[i] {
			t.Fatalf("node %d dropped its read states after an outage of the store", i)
		}
	}
	if after := c.owners(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("groups moved across the outage: %v, then %v", before, after)
	}
}

// TestHandOverWriteFails: a giver that cannot write its read states keeps
// serving its groups, and hands them over once it can.
func TestHandOverWriteFails(t *testing.T) {
	c := newTestCluster(t, 1)
	c.rounds(3)
	c.hosts[0].failWrite = true
	c.add()
	c.rounds(4)
	if got := c.owners()[c.nodes[0].ID()]; got != Groups {
		t.Fatalf("the giver serves %d groups, want all %d while it cannot write", got, Groups)
	}
	c.hosts[0].failWrite = false
	c.rounds(4)
	c.wantBalanced(ids(c.nodes...)...)
}

// TestEnterAllocs: the hot path of a node serving a slot allocates
// nothing.
func TestEnterAllocs(t *testing.T) {
	c := newTestCluster(t, 1)
	c.rounds(3)
	n := c.nodes[0]
	if n := testing.AllocsPerRun(1000, func() {
		if v, _ := n.Enter(1234); v == Serve {
			n.Exit(1234)
		}
	}); n != 0 {
		t.Fatalf("Enter/Exit: %v allocations", n)
	}
}

// BenchmarkEnterExit is the cost a cluster node adds to every command on
// a slot it serves.
func BenchmarkEnterExit(b *testing.B) {
	store, host := newMemStore(), newFakeHost()
	n, err := NewNode(Config{ID: fmt.Sprintf("%040x", 1), Addr: "127.0.0.1:7000", Store: store, Host: host,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	for range 3 {
		n.renewIfDue(context.Background(), false)
		n.round(context.Background())
	}
	if v, _ := n.Enter(1234); v != Serve {
		b.Fatalf("verdict %d", v)
	}
	n.Exit(1234)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if v, _ := n.Enter(1234); v == Serve {
				n.Exit(1234)
			}
		}
	})
}
