package e2e

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dialAtOnce bounds the first dial after a member's kill: the dialing router notices the
// dead control link by its heartbeats (about a second) and asks another member.
const dialAtOnce = 10 * time.Second

// startRouterAt enrolls router name through the cluster and runs it on addr, knowing at
// first only the member first (as a router enrolled when the cluster had one member, or
// whose other members were out of reach), with links to linkTo.
func (c *ctrlCluster) startRouterAt(first *ctrlMember, name, addr string, linkTo ...string) *proc {
	c.t.Helper()
	data := enrollRouter(c.t, c.env, c.dir, name)
	list, _ := json.Marshal([]string{"https://" + first.addr})
	if err := os.WriteFile(filepath.Join(data, "controllers.json"), list, 0o600); err != nil {
		c.t.Fatal(err)
	}
	args := []string{"router", "run", "--data", data, "--listen", addr}
	for _, l := range linkTo {
		args = append(args, "--link-to", l)
	}
	p := start(c.t, bins.umbra, args...)
	p.waitFor(c.t, "router "+name+" listening", readyTimeout)
	return p
}

// TestEveryMemberKnowsTheWholeFleet: three controllers; router r1 attached first to
// controller2, router r2 to controller3. An agent hosts echo on r1, another dials it on
// r2: the dial works, and every member lists both routers, both agents online and the
// link between the routers. Killing the member the routers prefer leaves the dial
// working at once, and a deletion through any member ends a circuit another member
// granted.
func TestEveryMemberKnowsTheWholeFleet(t *testing.T) {
	c := startCluster(t, 3)
	must(t, c.env, bins.umbra, "edge", "create", "edge-router-policy", "all", "--identities", "#all", "--routers", "#all")
	r1, r2 := freePort(t), freePort(t)
	c.startRouterAt(c.members[1], "r1", r1)
	c.startRouterAt(c.members[2], "r2", r2, r1)

	m := &mesh{t: t, dir: c.dir, q: quickstartJSON{Router: r1, Admin: c.admin}, env: c.env}
	m.edge("create", "service", "echo", "--host", "tcp:"+echoServer(t, "drone1"))
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@echo")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@echo")
	listen := freeTCP(t)
	drone := m.agentVia("drone1", m.enroll("drone1", "drone"), r1)
	op := m.agentVia("op", m.enroll("op", "operator"), r2, "--dial", "echo=tcp:"+listen)
	drone.waitHosting(t, "echo")
	op.waitLinkUp(t)

	waitUntil(t, readyTimeout, "op dials echo, hosted on the other router", func() bool {
		g, err := dialGreeting(listen)
		return err == nil && g == "drone1"
	})

	// Every member sees the whole fleet, whichever member each router met first.
	for _, mem := range c.members {
		env := c.adminAt(mem)
		waitUntil(t, onlineTimeout, mem.name+" lists r1, r2, drone1 and op online and the r1-r2 link up", func() bool {
			routers := listJSON(t, env, "routers")
			ids := listJSON(t, env, "identities")
			links := listJSON(t, env, "links")
			for _, name := range []string{"r1", "r2"} {
				if r := find(routers, name); r == nil || r["online"] != true {
					return false
				}
			}
			for _, name := range []string{"drone1", "op"} {
				if id := find(ids, name); id == nil || id["online"] != true {
					return false
				}
			}
			for _, name := range []string{"r1->r2", "r2->r1"} {
				if l := find(links, name); l == nil || l["state"] != "up" {
					return false
				}
			}
			return true
		})
	}

	// Kill -9 the member both routers ask first (the first of the list): the very next
	// dial works.
	dead := c.members[0]
	c.kill(dead)
	killed := time.Now()
	g, err := dialGreetingWithin(listen, dialAtOnce)
	if err != nil || g != "drone1" {
		t.Fatalf("first dial after killing %s: %q, %v; want drone1", dead.name, g, err)
	}
	t.Logf("first dial after killing %s answered in %v", dead.name, time.Since(killed).Round(time.Millisecond))

	// A circuit granted by the member now preferred (controller2) ends within 5 s of
	// its dial policy's deletion through another member (controller3).
	conn := dialGreeted(t, listen, "drone1")
	ended := make(chan time.Time, 1)
	go func() {
		io.Copy(io.Discard, conn)
		ended <- time.Now()
	}()
	deleted := time.Now()
	must(t, c.adminAt(c.members[2]), bins.umbra, "edge", "delete", "service-policy", "d")
	d := waitEnded(t, ended, deleted, "the dial policy was deleted through "+c.members[2].name)
	t.Logf("circuit ended %v after the delete through another member", d.Round(time.Millisecond))
}

// TestRouterAndAgentFollowTheCluster: a router and an agent enrolled with a cluster of
// one that grows to three: the router opens a control link to each new member, and
// closes the one to a member deleted later; the agent keeps the three members in its
// identity file once it asked the controller for its routers, so a restart still finds
// the cluster when the member it enrolled with is gone.
func TestRouterAndAgentFollowTheCluster(t *testing.T) {
	c := startCluster(t, 1)
	must(t, c.env, bins.umbra, "edge", "create", "edge-router-policy", "all", "--identities", "#all", "--routers", "#all")
	router := c.startRouterAt(c.members[0], "r1", freePort(t))
	m := &mesh{t: t, dir: c.dir, env: c.env}
	idFile := m.enroll("late", "drone")
	c.add()
	c.add()
	c.waitMembers(3)
	for _, mem := range c.members {
		waitUntil(t, convergeTimeout, "r1's control link to "+mem.name, func() bool {
			return strings.Contains(router.output(), `msg="control link up" controller=`+mem.addr)
		})
	}

	sock := filepath.Join(c.dir, "late.sock")
	start(t, bins.agent, "run", "--identity", idFile, "--status-socket", sock)
	waitUntil(t, readyTimeout, "late.json lists the three members", func() bool {
		data, err := os.ReadFile(idFile)
		var f struct {
			Controllers []string `json:"controllers"`
		}
		return err == nil && json.Unmarshal(data, &f) == nil && len(f.Controllers) == 3
	})
	if info, err := os.Stat(idFile); err != nil {
		t.Error(err)
	} else if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("late.json mode after the update: got %v, want 0600", got)
	}

	must(t, c.env, bins.umbra, "edge", "delete", "controller", "controller3")
	waitUntil(t, convergeTimeout, "r1 closing its control link to the deleted controller3", func() bool {
		return strings.Contains(router.output(), `msg="control link closed: the controller left the cluster" controller=https://`+c.members[2].addr)
	})
}
