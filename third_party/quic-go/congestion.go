package quic

import (
	"net"

	"github.com/umbranet/umbra/third_party/quic-go/internal/congestion"
	"github.com/umbranet/umbra/third_party/quic-go/internal/monotime"
	"github.com/umbranet/umbra/third_party/quic-go/internal/protocol"
	"github.com/umbranet/umbra/third_party/quic-go/internal/utils"
)

// CongestionControl is a connection's congestion controller and pacer, as quic-go's loss
// recovery drives it (umbra's patch): OnPacketSent for every packet sent, OnPacketAcked
// for every acknowledged one that counted in flight, OnCongestionEvent for every lost one,
// then CanSend, TimeUntilSend and HasPacingBudget before the next. Set one per connection
// with Config.Congestion.
type CongestionControl = congestion.SendAlgorithmWithDebugInfos

// RTTStats is a connection's round-trip statistics (latest, smoothed and minimum RTT),
// handed to Config.Congestion.
type RTTStats = utils.RTTStats

// ByteCount is a number of bytes, as CongestionControl counts them.
type ByteCount = protocol.ByteCount

// PacketNumber is a QUIC packet number, as CongestionControl sees them.
type PacketNumber = protocol.PacketNumber

// MonoTime is an instant in monotonic time (nanoseconds from an arbitrary origin), as
// CongestionControl sees it.
type MonoTime = monotime.Time

// congestionFor binds a connection's peer address to Config.Congestion (umbra's patch),
// for the loss recovery that makes the controller; nil stays nil.
func congestionFor(f func(*RTTStats, net.Addr) CongestionControl, peer net.Addr) func(*RTTStats) CongestionControl {
	if f == nil {
		return nil
	}
	return func(r *RTTStats) CongestionControl { return f(r, peer) }
}
