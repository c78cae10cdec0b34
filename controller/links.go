package controller

import (
	"maps"
	"sort"
	"time"

	"github.com/umbranet/umbra/controller/events"
	"github.com/umbranet/umbra/controller/paths"
	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/wire"
)

// LinkInfo is one router link as `umbra edge list links` shows it: one row per end that
// reports it, so a link seen from both sides appears twice.
type LinkInfo struct {
	Name   string  `json:"name"` // "FROM->TO"
	From   string  `json:"from"`
	To     string  `json:"to"`
	State  string  `json:"state"` // "up" or "down"
	RTTMs  float64 `json:"rtt_ms"`
	Loss   float64 `json:"loss"` // fraction of packets lost, 0..1
	Dialed bool    `json:"dialed"`
}

// setLinks records a router's report of its links, replacing its previous one, and
// that the agents it lists are online.
func (c *Controller) setLinks(routerID string, rep wire.LinkReport) {
	c.mu.Lock()
	if _, online := c.online[routerID]; !online {
		c.mu.Unlock()
		return
	}
	was := map[string]bool{}
	for _, l := range c.links[routerID] {
		was[l.Peer] = l.Up
	}
	c.links[routerID] = rep.Links
	for _, a := range rep.Agents {
		c.agentLinks[a.Identity] = a
	}
	c.mu.Unlock()
	// The router's agents count online on every member it reports to, not only on the
	// one their requests go to.
	for _, a := range rep.Agents {
		if rec, err := c.identityByID(a.Identity); err == nil {
			c.markSeen(rec, routerID)
		}
	}
	for _, l := range rep.Links {
		if up, seen := was[l.Peer]; (!seen && l.Up) || (seen && up != l.Up) {
			c.linkEvent(routerID, l.Peer, l.Up)
		}
		delete(was, l.Peer)
	}
	for peer, up := range was {
		if up {
			c.linkEvent(routerID, peer, false)
		}
	}
}

// linkEvent records that the link from router to peer, as router reports it, went up or
// down.
func (c *Controller) linkEvent(router, peer string, up bool) {
	names := c.routerNames([]string{router, peer})
	e := events.Event{Type: events.LinkDown, Name: names[0] + "-" + names[1]}
	if up {
		e.Type = events.LinkUp
	}
	c.event(e)
}

// graph builds the mesh the controller routes circuits through: the links both of whose
// ends report them up, each with the worse of its two ends' figures. A link one end no
// longer reports (its peer died, or it went offline) carries nothing.
func (c *Controller) graph() (*paths.Graph, error) {
	c.mu.Lock()
	type pair struct{ a, b string }
	half := map[pair]wire.LinkState{}
	done := map[pair]bool{}
	var links []paths.Link
	for from, reported := range c.links {
		for _, l := range reported {
			if !l.Up || l.Peer == "" || l.Peer == from {
				continue
			}
			key := pair{min(from, l.Peer), max(from, l.Peer)}
			if done[key] {
				continue
			}
			other, ok := half[pair{l.Peer, from}]
			if !ok {
				half[pair{from, l.Peer}] = l
				continue
			}
			done[key] = true
			links = append(links, paths.Link{
				A: from, B: l.Peer, Up: true,
				RTT:  time.Duration(max(l.RTTMicros, other.RTTMicros)) * time.Microsecond,
				Loss: float64(max(l.LossPermille, other.LossPermille)) / 1000,
			})
		}
	}
	c.mu.Unlock()
	return paths.New(links)
}

// linkInfos lists every reported link for the management API, named by router names.
func (c *Controller) linkInfos() []LinkInfo {
	c.mu.Lock()
	reps := maps.Clone(c.links)
	c.mu.Unlock()
	name := func(id string) string {
		var r store.Router
		if err := c.store.GetByID(store.Routers, id, &r); err != nil {
			return id
		}
		return r.Name
	}
	out := []LinkInfo{}
	for from, reported := range reps {
		for _, l := range reported {
			info := LinkInfo{From: name(from), To: name(l.Peer), State: "down", RTTMs: float64(l.RTTMicros) / 1000, Loss: float64(l.LossPermille) / 1000, Dialed: l.Dialed}
			if l.Up {
				info.State = "up"
			}
			info.Name = info.From + "->" + info.To
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
