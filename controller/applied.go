package controller

import (
	"context"
	"time"
)

// appliedPoll is how often a member looks for log entries it applied since it last
// looked, to end the bindings and circuits it holds that they no longer allow: a
// deletion or update made through another member reaches what this one holds within
// this long (the member that served the write enforces at once).
const appliedPoll = 500 * time.Millisecond

// watchApplied runs enforceHeld whenever this member's store applied new entries from
// the cluster's log, until ctx ends. Routers keep a lease on every member, so each
// member ends what it holds itself; the revocation list and the notice that records
// changed are pushed by the member that served the write, to every router. It watches
// the store's applied index, not Raft's: Raft's counts an entry once it is handed to the
// FSM, and a look at the store in between missed the deletion for good (a circuit
// outlived its deleted policy on a busy machine).
func (c *Controller) watchApplied(ctx context.Context) {
	last := c.node.StoreApplied()
	t := time.NewTicker(appliedPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := c.node.StoreApplied(); now != last {
			last = now
			c.enforceHeld()
		}
	}
}
