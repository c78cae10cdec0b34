// Package linksim emulates the lossy, slow and intermittent radio links umbra runs over:
// loss (independent and Gilbert–Elliott bursts), delay, jitter, reordering, duplication,
// a rate cap with a bounded queue, an MTU and blackouts, each changeable at run time.
//
// The kernel umbra is tested on has no netem, so every lossy-link test and figure goes
// through this package. It owns the impairment engine (one pipe per direction of a Link),
// the named profiles and their file format, the text console that changes a running
// link, and the two modes that feed the engine packets: UDPProxy, a user-space UDP proxy
// for unprivileged tests, and NetnsLink, an IP link between two network namespaces
// through TUN devices (root), so TCP peers see the same impairment as umbra does.
// It must not depend on any other umbra package: it is test equipment, not product code.
package linksim
