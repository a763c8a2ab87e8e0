package cluster

import "slices"

// rebalancePlan is what one node does in a round: groups it gives (to
// node ID; "" releases) and groups it claims.
type rebalancePlan struct {
	give  map[int]string
	claim []int
}

// plan computes the fair share of every live node (Groups over the live
// nodes, the first ones by ID taking one more), then matches what is to
// move with the nodes below their share, in ID order: first the groups
// nobody holds, in group order, then each node's groups above its share
// (a leaving node's share is 0), its highest groups first. Every node
// computes the same matching from the same map, and keeps its own part.
func plan(self string, rows []NodeRow, groups *[Groups]GroupRow, live func(*NodeRow) bool) rebalancePlan {
	liveIDs := sortedIDs(rows, live)
	share := make(map[string]int, len(liveIDs))
	for i, id := range liveIDs {
		share[id] = Groups / len(liveIDs)
		if i < Groups%len(liveIDs) {
			share[id]++
		}
	}
	heldBy := map[string][]int{}
	var orphans []int
	for g := range groups {
		if _, ok := holds(rows, &groups[g]); ok {
			heldBy[groups[g].Owner] = append(heldBy[groups[g].Owner], g)
		} else {
			orphans = append(orphans, g)
		}
	}
	// The receivers, with their deficits, in ID order.
	type slot struct {
		id   string
		left int
	}
	var recv []slot
	for _, id := range liveIDs {
		if d := share[id] - len(heldBy[id]); d > 0 {
			recv = append(recv, slot{id, d})
		}
	}
	next := func() string {
		for len(recv) > 0 && recv[0].left == 0 {
			recv = recv[1:]
		}
		if len(recv) == 0 {
			return ""
		}
		recv[0].left--
		return recv[0].id
	}
	p := rebalancePlan{give: map[int]string{}}
	for _, g := range orphans {
		to := next()
		if to == "" {
			break
		}
		if to == self {
			p.claim = append(p.claim, g)
		}
	}
	holders := make([]string, 0, len(heldBy))
	for id := range heldBy {
		holders = append(holders, id)
	}
	slices.Sort(holders)
	for _, id := range holders {
		held := heldBy[id]
		excess := len(held) - share[id] // share is 0 unless live
		for i := len(held) - 1; i >= 0 && excess > 0; i, excess = i-1, excess-1 {
			to := next()
			if id == self && (to != "" || len(liveIDs) == 0) {
				p.give[held[i]] = to // "" with no live node: released
			}
		}
	}
	return p
}
