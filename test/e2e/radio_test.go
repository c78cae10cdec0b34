package e2e

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"umbra/internal/linksim"
)

// radioMesh is a quickstart whose operator reaches the router through the link emulator,
// as over a radio, while the drone hosting "echo" sits on the ground network.
type radioMesh struct {
	*mesh
	radio  *linksim.Link
	proxy  *linksim.UDPProxy
	op     *agentProc
	drone  *agentProc
	listen string
}

func startRadioMesh(t *testing.T) *radioMesh {
	m := startMesh(t)
	m.edge("create", "service", "echo", "--host", "tcp:127.0.0.1:1")
	m.edge("create", "service-policy", "echo-bind", "--type", "bind", "--identities", "#drone", "--services", "@echo")
	m.edge("create", "service-policy", "echo-dial", "--type", "dial", "--identities", "#operator", "--services", "@echo")
	radio, err := linksim.NewLink(linksim.Impairment{}, linksim.Impairment{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	proxy, err := linksim.NewUDPProxy(ctx, "127.0.0.1:0", m.q.Router, radio)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	rm := &radioMesh{mesh: m, radio: radio, proxy: proxy, listen: freeTCP(t)}
	rm.drone = m.agent("drone", m.enroll("drone", "drone"), "--host", "echo=tcp:"+echoServer(t, "drone"))
	sock := filepath.Join(m.dir, "op.sock")
	rm.op = &agentProc{proc: start(t, bins.agent, "run", "--identity", m.enroll("op", "operator"),
		"--routers", proxy.Addr().String(), "--status-socket", sock, "--dial", "echo=tcp:"+rm.listen), socket: sock}
	rm.drone.waitHosting(t, "echo")
	rm.op.waitLinkUp(t)
	return rm
}

// linkState returns the operator's router link state as status shows it.
func (rm *radioMesh) linkState(t *testing.T) string {
	st, err := rm.op.status(t)
	if err != nil || len(st.Links) == 0 {
		return ""
	}
	return st.Links[0].State
}

// TestRadioBlackout blacks the operator's radio out and checks the link manager: the
// link is reported stalled, and once the radio returns new circuits work within about a
// second, whatever QUIC's retransmission timers have backed off to.
func TestRadioBlackout(t *testing.T) {
	rm := startRadioMesh(t)
	if g, err := dialGreeting(rm.listen); err != nil || g != "drone" {
		t.Fatalf("before the blackout: greeting %q, %v", g, err)
	}

	const blackout = 8 * time.Second
	rm.radio.SetBlackout(true)
	began := time.Now()
	waitUntil(t, blackout, "link reported stalled during the blackout", func() bool {
		return rm.linkState(t) == "stalled"
	})
	t.Logf("stall detected %v into the blackout", time.Since(began).Round(time.Millisecond))
	time.Sleep(time.Until(began.Add(blackout))) // the blackout's length is the test's subject
	rm.radio.SetBlackout(false)
	back := time.Now()
	waitUntil(t, readyTimeout, "a circuit after the radio returned", func() bool {
		c, err := net.DialTimeout("tcp", rm.listen, commandTimeout)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 6)
		_, err = c.Read(buf)
		return err == nil && string(buf) == "drone\n"
	})
	recovery := time.Since(back)
	t.Logf("traffic resumed %v after the radio returned from a %v blackout", recovery.Round(time.Millisecond), blackout)
	if recovery > 5*time.Second {
		t.Errorf("recovery took %v; want about a second", recovery)
	}
	waitUntil(t, 5*time.Second, "link reported up again", func() bool { return rm.linkState(t) == "up" })
}
