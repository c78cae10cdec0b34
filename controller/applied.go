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
// changed are pushed by the member that served the write, to every router.
func (c *Controller) watchApplied(ctx context.Context) {
	last := c.node.Status().AppliedIndex
	t := time.NewTicker(appliedPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := c.node.Status().AppliedIndex; now != last {
			last = now
			c.enforceHeld()
		}
	}
}
