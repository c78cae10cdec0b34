package agent

import (
	"context"
	"fmt"
	"testing"
)

// TestEventsKeepTheNewest: a subscriber that does not read keeps the newest
// eventBuffer events, in order, and its channel closes when its context ends.
func TestEventsKeepTheNewest(t *testing.T) {
	a := &Agent{events: map[chan Event]struct{}{}}
	a.runCtx, a.stop = context.WithCancel(context.Background())
	defer a.stop()
	ctx, cancel := context.WithCancel(context.Background())
	ch := a.Events(ctx)
	const sent = eventBuffer + 10
	for i := range sent {
		a.mu.Lock()
		a.emitLocked(Event{Router: fmt.Sprint(i), State: LinkUp})
		a.mu.Unlock()
	}
	for i := sent - eventBuffer; i < sent; i++ {
		if e := <-ch; e.Router != fmt.Sprint(i) {
			t.Fatalf("got event of router %s, want %d: the oldest are dropped", e.Router, i)
		}
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Errorf("got an event after the subscription ended, want the channel closed")
	}
	a.stop()
	if _, ok := <-a.Events(context.Background()); ok {
		t.Errorf("a subscription on a closed agent got an event, want its channel closed")
	}
}

func TestAddrString(t *testing.T) {
	tests := []struct {
		addr Addr
		want string
	}{
		{Addr{Service: "web", Identity: "user1"}, "web@user1"},
		{Addr{Service: "mavlink", Identity: "drone1", Circuit: 7}, "mavlink@drone1#7"},
	}
	for _, tt := range tests {
		if got := tt.addr.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
		if got := tt.addr.Network(); got != "umbra" {
			t.Errorf("Network() = %q, want umbra", got)
		}
	}
}
