// Package agent is umbra's edge agent as a library: the Go SDK with which any program
// joins an umbra network, dark. A program enrolls once with a one-time token, then
// starts an Agent that keeps a link to an edge router. Through it the program dials
// services by name (Dial, DialHost, DialPacket, or Dialer under net/http) and hosts them
// (Listen, ListenPacket) without opening any listening socket: every circuit arrives
// over the agent's own outbound link, and the two agents at its ends run TLS 1.3 with
// their identity certificates, so routers carry only ciphertext.
//
//	id, err := agent.Enroll(ctx, token, agent.EnrollOptions{Path: "id.json"}) // once
//	id, err := agent.LoadIdentity("id.json")                                  // afterwards
//	a, err := agent.New(ctx, agent.Config{Identity: id})
//	defer a.Close()
//	ln, err := a.Listen(ctx, "web")       // a net.Listener with no socket
//	http.Serve(ln, handler)
//
//	c := &http.Client{Transport: &http.Transport{DialContext: a.Dialer().DialContext}}
//	resp, err := c.Get("http://web/") // the URL's host is the service's name
//
// The zero Config means what `umbra-agent run` does with no flags: the LAN link
// profile, TCP circuits on QUIC streams and UDP circuits in QUIC DATAGRAM frames of the
// router link, forward error correction on UDP while the link's heartbeats show loss,
// and hosting of every service this identity may bind that names a host address. The
// umbra-agent command is a thin layer over this package: it fills a Config from flags
// and adds what belongs to a device rather than a program (GOMAXPROCS, the status LED,
// watchdogs, systemd).
//
// The package must not decide policy: what an identity may dial or host is the
// controller's, enforced by the routers.
package agent
