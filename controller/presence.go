package controller

import (
	"context"
	"time"

	"github.com/umbranet/umbra/controller/events"
	"github.com/umbranet/umbra/controller/store"
)

// presenceSweep is how often the controller looks for identities that went quiet, to
// record them offline: a fraction of presenceWindow, so an offline event comes at most
// this late.
const presenceSweep = 5 * time.Second

// markSeen records that router relayed a request for id now, and an identity-online
// event when it was not counted online before.
func (c *Controller) markSeen(id store.Identity, router string) {
	c.mu.Lock()
	c.seen[id.ID] = c.cfg.Now()
	c.via[id.ID] = router
	arrived := !c.present[id.ID]
	c.present[id.ID] = true
	c.mu.Unlock()
	if arrived {
		c.event(events.Event{Type: events.IdentityOnline, Name: id.Name})
	}
}

// watchPresence records an identity-offline event for each identity no router has
// relayed for within presenceWindow, until ctx ends.
func (c *Controller) watchPresence(ctx context.Context) {
	tick := time.NewTicker(presenceSweep)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.sweepPresence()
	}
}

// sweepPresence records offline the identities no router relayed for within
// presenceWindow.
func (c *Controller) sweepPresence() {
	now := c.cfg.Now()
	var gone []string
	c.mu.Lock()
	for id := range c.present {
		if now.Sub(c.seen[id]) >= presenceWindow {
			delete(c.present, id)
			gone = append(gone, id)
		}
	}
	c.mu.Unlock()
	for _, id := range gone {
		c.event(events.Event{Type: events.IdentityOffline, Name: c.identityName(id)})
	}
}
