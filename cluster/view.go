package cluster

import "time"

// View is a node's map of the cluster at one moment: the nodes and who
// holds each group. It is immutable once published.
type View struct {
	id     string        // this node's ID
	readAt time.Duration // Mono when it was read
	self   int           // index of this node in nodes, -1 if absent
	nodes  []NodeRow     // the rows not down, and this node's
	groups [Groups]groupView
	epoch  int64
}

type groupView struct {
	owner    int // index in nodes, -1 if none
	epoch    int64
	held     bool // the owner holds it (see holds)
	assigned bool // it has an owner, down or not
	serving  bool // this node serves it
	moving   bool // this node is handing it over
}

// Self returns this node's row and whether it is registered.
func (v *View) Self() (NodeRow, bool) {
	if v.self < 0 {
		return NodeRow{}, false
	}
	return v.nodes[v.self], true
}

// ID returns this node's ID (known before its first map).
func (v *View) ID() string { return v.id }

// Nodes returns the nodes that are not down, this one included.
func (v *View) Nodes() []NodeRow { return v.nodes }

// IsSelf reports whether nodes[i] is this node.
func (v *View) IsSelf(i int) bool { return i == v.self }

// Mine returns how many groups this node serves or is handing over.
func (v *View) Mine() int {
	n := 0
	for g := range v.groups {
		if v.groups[g].serving || v.groups[g].moving {
			n++
		}
	}
	return n
}

// Held returns how many groups are held by a live owner.
func (v *View) Held() int {
	n := 0
	for g := range v.groups {
		if v.groups[g].held && v.groups[g].owner >= 0 {
			n++
		}
	}
	return n
}

// Assigned returns how many groups have an owner, live or not.
func (v *View) Assigned() int {
	n := 0
	for g := range v.groups {
		if v.groups[g].assigned {
			n++
		}
	}
	return n
}

// Epoch returns the highest group epoch (Redis's cluster_current_epoch).
func (v *View) Epoch() int64 { return v.epoch }

// NodeEpoch returns the highest epoch of the groups nodes[i] holds
// (Redis's config epoch of a master).
func (v *View) NodeEpoch(i int) int64 {
	var e int64
	for g := range v.groups {
		if v.groups[g].owner == i {
			e = max(e, v.groups[g].epoch)
		}
	}
	return e
}

// Range is a run of consecutive slots held by one node.
type Range struct {
	Start, End int // inclusive
	Node       int // index in Nodes
}

// Ranges returns the slot ranges that have a live owner, in slot order,
// consecutive groups of one owner merged.
func (v *View) Ranges() []Range {
	var rs []Range
	for g := range v.groups {
		gv := &v.groups[g]
		if gv.owner < 0 || !gv.held {
			continue
		}
		start, end := g*GroupSlots, (g+1)*GroupSlots-1
		if n := len(rs); n > 0 && rs[n-1].Node == gv.owner && rs[n-1].End == start-1 {
			rs[n-1].End = end
			continue
		}
		rs = append(rs, Range{Start: start, End: end, Node: gv.owner})
	}
	return rs
}
