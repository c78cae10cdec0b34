package agent

import (
	"context"
	"sort"
	"time"
)

// eventBuffer is how many events wait for a slow reader of Events; beyond it the oldest
// are dropped, so a reader that falls behind sees the newest state.
const eventBuffer = 64

// Link states of LinkStatus.State and Event.State.
const (
	// LinkUp carries the agent's traffic.
	LinkUp = "up"
	// LinkConnecting is being set up.
	LinkConnecting = "connecting"
	// LinkStalled is up but has not answered heartbeats; fresh connections race it.
	LinkStalled = "stalled"
	// LinkStandby is a router reachable while another carries the link.
	LinkStandby = "standby"
	// LinkDown is neither up nor being set up.
	LinkDown = "down"
)

// Event is a change of one router link's state.
type Event struct {
	// Time is when the link changed.
	Time time.Time
	// Router is the router's HOST:PORT.
	Router string
	// State is the link's new state: LinkUp, LinkConnecting, LinkStalled, LinkStandby or
	// LinkDown.
	State string
	// Err says why a link went down or stalled; empty otherwise.
	Err string
}

// Events returns the agent's link state changes from now on, until ctx ends or the agent
// is closed (the channel is then closed). A reader that falls more than 64 events behind
// loses the oldest; Status has the current state at any time.
func (a *Agent) Events(ctx context.Context) <-chan Event {
	ch := make(chan Event, eventBuffer)
	a.mu.Lock()
	if a.runCtx.Err() != nil {
		a.mu.Unlock()
		close(ch)
		return ch
	}
	a.events[ch] = struct{}{}
	a.mu.Unlock()
	context.AfterFunc(ctx, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if _, ok := a.events[ch]; ok {
			delete(a.events, ch)
			close(ch)
		}
	})
	return ch
}

// emitLocked sends e to every subscriber, dropping a subscriber's oldest event when its
// buffer is full; a.mu is held.
func (a *Agent) emitLocked(e Event) {
	for ch := range a.events {
		for {
			select {
			case ch <- e:
			default:
				select {
				case <-ch:
				default:
				}
				continue
			}
			break
		}
	}
}

// closeEvents ends every subscription.
func (a *Agent) closeEvents() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ch := range a.events {
		delete(a.events, ch)
		close(ch)
	}
}

// Service is a service this identity may use, as the controller lists it.
type Service struct {
	// Name is the service's name, what Dial and Listen take.
	Name string
	// Host is PROTO:HOST:PORT where a hosting agent delivers it by default, "" for a
	// service that programs host through Listen.
	Host string
	// Intercept is PROTO:HOST:PORT where a dialing agent listens for it by default.
	Intercept string
	// CanDial and CanBind say whether this identity may dial and host it.
	CanDial, CanBind bool
}

// Services lists the services this identity may dial or host, by name, as the router
// last said (empty before the first link is up).
func (a *Agent) Services() []Service {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Service, 0, len(a.services))
	for _, s := range a.services {
		out = append(out, Service{Name: s.Name, Host: s.Host, Intercept: s.Intercept, CanDial: s.Dial, CanBind: s.Bind})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
