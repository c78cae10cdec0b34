// Package lab is the harness the tests and the bench share: it brings up a controller,
// routers and agents either in one process (Mesh: the controller, router and agent
// packages as libraries, a router's or an agent's hop optionally through an
// internal/linksim link) or as the real binaries (Bins, Proc, Quickstart), and owns what
// both kinds of test need around them: building and finding the binaries, starting and
// stopping processes with their logs, polling for readiness with a deadline, enrolling
// identities and routers, TCP and UDP echo servers, free loopback ports.
//
// lab must not be imported by the agent, router or controller packages themselves (it
// imports all three); their external tests (package agent_test, router_test) may use it.
// It listens only on loopback, or inside network namespaces a linksim link made.
package lab
