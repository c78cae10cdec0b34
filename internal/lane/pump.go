package lane

import (
	"context"
	"net"
)

// pumpQueue is how many packets Pump holds between reading and handling them.
const pumpQueue = 1024

// ReadFunc reads one non-QUIC packet: quic.Transport.ReadNonQUICPacket.
type ReadFunc func(ctx context.Context, b []byte) (int, net.Addr, error)

// Prime makes quic-go keep the non-QUIC packets that arrive from now on: until the
// first read it drops them. Call it before the peer may send, then Pump.
func Prime(read ReadFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	read(ctx, nil) // returns at once; the queue now exists
}

// Pump reads packets with read until ctx ends or read fails, and hands each, in order,
// to handle on a second goroutine. quic-go holds only 256 non-QUIC packets (32 upstream) and drops the
// rest, so the reading loop does nothing but copy; opening and forwarding happen behind
// a queue of pumpQueue packets, which drops the newest when full.
func Pump(ctx context.Context, read ReadFunc, handle func(pkt []byte, from net.Addr)) {
	type packet struct {
		buf  [MaxPacket + 1]byte
		n    int
		from net.Addr
	}
	// Buffers are made as bursts need them and kept for reuse: an idle agent holds few.
	free := make(chan *packet, pumpQueue)
	full := make(chan *packet, pumpQueue)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range full {
			handle(p.buf[:p.n], p.from)
			select {
			case free <- p:
			default:
			}
		}
	}()
	defer func() {
		close(full)
		<-done
	}()
	for {
		var p *packet
		select {
		case p = <-free:
		default:
			p = new(packet)
		}
		n, from, err := read(ctx, p.buf[:])
		if err != nil {
			return
		}
		p.n, p.from = n, from
		select {
		case full <- p:
		default: // the handler is far behind: drop
		}
	}
}
