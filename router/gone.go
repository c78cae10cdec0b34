package router

import (
	"bytes"
	"net"
	"net/netip"
	"time"
)

// A hosting agent that dies must not leave its dialers waiting out the minute a circuit
// waits to resume across its host's radio blackout. The router tells a dead agent from a
// silent one in two ways. A restarted agent says Hello with a new instance id (see
// supersede). An agent whose process died while its host lives on has a host that
// answers the router's packets with ICMP port unreachable, which a radio blackout never
// does: the router reads those from its socket's error queue, probes agents that have gone
// silent so that a dead one is asked, and ends the dead one's circuits as gone
// (wire.StreamCircuitPeerGone), so its dialers end them at once.
const (
	// icmpPoll is how often the router reads its socket's queue of ICMP errors.
	icmpPoll = 100 * time.Millisecond
	// probeAfter is how long an agent's heartbeats (every 250 ms) may stop before the
	// router sends it a probe each probeEvery: a live one ignores it, a dead one's host
	// answers port unreachable.
	probeAfter = time.Second
	probeEvery = time.Second
	// reconnectGrace is how long a connection whose agent's port is unreachable waits to
	// hear the agent again or see it link again. An agent whose address changed (a NAT
	// rebinding, a roam) keeps its connection, whose heartbeats (every 250 ms) now come
	// from the new address; one whose link ended and that closed the socket (after a
	// blackout longer than its idle timeout, say) links again, and the circuits resume on
	// the new connection. Hearing neither in time, the process is gone.
	reconnectGrace = 1500 * time.Millisecond
	// gonePoll is how often the grace looks for the agent's new connection.
	gonePoll = 50 * time.Millisecond
	// helloWait is how much longer than reconnectGrace the router waits for the Hello of
	// a connection the agent opened in the grace: its instance says whether the same
	// process linked again (the circuits resume there) or a restarted one did (they end
	// as gone). An agent says Hello as soon as its handshake ends.
	helloWait = 2 * time.Second
)

// peerUnreachable ends the agent sessions whose address ap the host answered with port
// unreachable: nothing listens there any more.
func (r *Router) peerUnreachable(ap netip.AddrPort) {
	r.mu.Lock()
	var dead []*session
	for _, s := range r.sessions {
		if s.unreachable || s.conn.Context().Err() != nil || addrPortOf(s.conn.RemoteAddr()) != ap {
			continue
		}
		s.unreachable = true
		dead = append(dead, s)
	}
	r.mu.Unlock()
	for _, s := range dead {
		r.log.Info("agent's old address answered port unreachable; waiting for it to be heard or link again", "identity", s.peer.Name, "remote", s.conn.RemoteAddr().String())
		go r.endUnreachable(s)
	}
}

// endUnreachable closes s, whose agent's old address is unreachable: not at all when the
// agent is heard again on s within reconnectGrace (it moved to a new address), as
// replaced when the same process links again (its circuits resume), else as gone; a
// restarted process's Hello closes s as gone meanwhile (supersede).
func (r *Router) endUnreachable(s *session) {
	since := time.Now()
	deadline := since.Add(reconnectGrace)
	tick := time.NewTicker(gonePoll)
	defer tick.Stop()
	for {
		if time.Unix(0, s.heard.Load()).After(since) {
			r.mu.Lock()
			s.unreachable = false
			r.mu.Unlock()
			r.log.Debug("agent heard again after its old address was unreachable", "identity", s.peer.Name, "remote", s.conn.RemoteAddr().String())
			return
		}
		same, pending := r.relinked(s)
		if same {
			r.log.Info("agent's old connection unreachable; it linked again", "identity", s.peer.Name)
			s.conn.CloseWithError(errCodeReplaced, "replaced by a fresh connection")
			return
		}
		if now := time.Now(); now.After(deadline) && (!pending || now.After(deadline.Add(helloWait))) {
			r.log.Info("agent's port unreachable: closing its connection", "identity", s.peer.Name, "remote", s.conn.RemoteAddr().String())
			s.conn.CloseWithError(errCodeGone, "agent gone: port unreachable")
			return
		}
		select {
		case <-s.conn.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// relinked reports whether the agent process of s has another live connection here
// whose Hello named the same instance (same), and whether one of the identity's live
// connections has not said Hello yet (pending). A connection counts only once its Hello
// has come: until then it may be a restarted process's, whose Hello ends s as gone
// (supersede), not as replaced. Under load the ICMP of the killed process can reach
// the router before the restarted one's Hello.
func (r *Router) relinked(s *session) (same, pending bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.sessions {
		if o == s || o.peer.ID != s.peer.ID || o.unreachable || o.conn.Context().Err() != nil {
			continue
		}
		if !o.helloed {
			pending = true
			continue
		}
		if bytes.Equal(o.instance, s.instance) {
			return true, false
		}
	}
	return false, pending
}

// addrPortOf is a UDP address as a comparable value, IPv4-in-IPv6 unmapped.
func addrPortOf(a net.Addr) netip.AddrPort {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// probeSilent sends the agent an empty heartbeat datagram every probeEvery while its
// heartbeats have stopped for probeAfter, until the connection ends: a live agent ignores
// it; a dead one's host answers port unreachable.
func (s *session) probeSilent() {
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	probe := []byte{heartbeatCID}
	for {
		select {
		case <-s.conn.Context().Done():
			return
		case <-tick.C:
		}
		if time.Since(time.Unix(0, s.heard.Load())) > probeAfter {
			s.conn.SendDatagram(probe)
		}
	}
}
