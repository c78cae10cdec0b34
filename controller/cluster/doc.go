// Package cluster replicates the controller's store across controllers with Raft
// (hashicorp/raft, its log and stable store in raft-boltdb/v2). Every store.Command is
// one log entry that each member applies to its own bbolt file in one transaction,
// with the entry's index stored beside the change; a snapshot is the bbolt file itself.
// Writes go to the leader (a follower forwards them over HTTPS with its controller
// certificate); reads are local. Raft's own traffic rides the controller's TCP port
// under mutual TLS, told apart from the management API by its ALPN (transport.ALPNRaft).
//
// A single controller is a cluster of one on the same code path. The package owns
// consensus and membership; it must not know what the records mean (that is the store)
// or who may ask for what (that is the controller's management API).
package cluster
