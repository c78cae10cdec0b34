package linksim

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Engine tunables.
const (
	// packetBufSize is the capacity of pooled packet buffers: an Ethernet MTU of 1500
	// plus headroom. Larger datagrams get a buffer of their own that is not pooled.
	packetBufSize = 2048
	// minRingSize is the first allocation of the rate limiter's departure ring.
	minRingSize = 16
)

// packet is one datagram travelling through a pipe. Packets come from and return to
// packetPool so the per-packet path does not allocate.
type packet struct {
	buf  []byte
	data []byte
	// dst is opaque to the pipe: the mode that submitted the packet uses it in deliver
	// (the UDP proxy stores the client's *session).
	dst any
	// at is the delivery time, as an offset from the pipe's epoch; seq breaks ties so
	// packets due at the same time leave in the order they arrived.
	at  time.Duration
	seq uint64
}

var packetPool = sync.Pool{New: func() any { return &packet{buf: make([]byte, packetBufSize)} }}

// newPacket returns a pooled packet holding a copy of data.
func newPacket(data []byte) *packet {
	p := packetPool.Get().(*packet)
	if len(data) > cap(p.buf) {
		p.buf = make([]byte, len(data))
	}
	p.data = p.buf[:len(data)]
	copy(p.data, data)
	return p
}

// freePacket returns p to the pool; oversized buffers are left to the garbage collector.
func freePacket(p *packet) {
	p.data, p.dst = nil, nil
	if cap(p.buf) == packetBufSize {
		packetPool.Put(p)
	}
}

// packetHeap orders pending packets by delivery time (container/heap).
type packetHeap []*packet

func (h packetHeap) Len() int { return len(h) }
func (h packetHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h packetHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)   { *h = append(*h, x.(*packet)) }
func (h *packetHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}

// timeRing is a FIFO of departure times: the packets waiting for the rate limiter.
type timeRing struct {
	buf     []time.Duration
	head, n int
}

func (r *timeRing) push(t time.Duration) {
	if r.n == len(r.buf) {
		grown := make([]time.Duration, max(minRingSize, 2*len(r.buf)))
		for i := range r.n {
			grown[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = grown, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = t
	r.n++
}

// popThrough forgets the packets that have left the queue by now.
func (r *timeRing) popThrough(now time.Duration) {
	for r.n > 0 && r.buf[r.head] <= now {
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
}

// Drops counts packets an impairment discarded, by reason.
type Drops struct {
	// Loss counts random and Gilbert–Elliott losses.
	Loss uint64
	// Blackout counts packets dropped during a blackout.
	Blackout uint64
	// MTU counts packets larger than Impairment.MTU.
	MTU uint64
	// Queue counts packets that found the rate limiter's queue full.
	Queue uint64
}

// Total returns the number of drops for all reasons.
func (d Drops) Total() uint64 { return d.Loss + d.Blackout + d.MTU + d.Queue }

// DirStats counts what one direction did with its packets. Bytes are UDP payload
// bytes for the UDP proxy and whole IP packets for the netns link.
type DirStats struct {
	// PacketsIn and BytesIn count the datagrams offered to the direction.
	PacketsIn, BytesIn uint64
	// PacketsOut and BytesOut count the datagrams delivered, duplicates included.
	PacketsOut, BytesOut uint64
	// Dropped counts the datagrams the impairment discarded, by reason.
	Dropped Drops
	// Duplicated counts the extra copies made by Impairment.Duplicate.
	Duplicated uint64
	// Reordered counts the packets held back by Impairment.Reorder.
	Reordered uint64
	// SendErrors counts deliveries the operating system refused, such as writes to an
	// upstream socket closed by Rebind or idle expiry while the packet was in flight,
	// or to a TUN device being closed.
	SendErrors uint64
}

// Stats is a snapshot of both directions' counters.
type Stats struct {
	// Up is client to target (side A to side B), Down the other way.
	Up, Down DirStats
}

// counters are a pipe's live DirStats.
type counters struct {
	packetsIn, bytesIn, packetsOut, bytesOut   atomic.Uint64
	dropLoss, dropBlackout, dropMTU, dropQueue atomic.Uint64
	duplicated, reordered, sendErrors          atomic.Uint64
}

func (c *counters) snapshot() DirStats {
	return DirStats{
		PacketsIn: c.packetsIn.Load(), BytesIn: c.bytesIn.Load(),
		PacketsOut: c.packetsOut.Load(), BytesOut: c.bytesOut.Load(),
		Dropped: Drops{
			Loss: c.dropLoss.Load(), Blackout: c.dropBlackout.Load(),
			MTU: c.dropMTU.Load(), Queue: c.dropQueue.Load(),
		},
		Duplicated: c.duplicated.Load(), Reordered: c.reordered.Load(),
		SendErrors: c.sendErrors.Load(),
	}
}

// dropStranded counts a packet of n bytes of a stranded mapping (UDPProxy.Strand) as
// offered and dropped by a blackout.
func (p *pipe) dropStranded(n int) {
	p.c.packetsIn.Add(1)
	p.c.bytesIn.Add(uint64(n))
	p.c.dropBlackout.Add(1)
}

// pipe is the impairment engine for one direction of a Link. A mode (the UDP proxy
// or the netns link's TUN readers) hands it packets with submit; one goroutine, run, delivers
// them at their scheduled times through deliver, in delivery-time order.
type pipe struct {
	link *Link
	imp  *atomic.Pointer[Impairment]
	// overhead is added to a packet's length for MTU and rate decisions: the headers
	// the mode strips (IP and UDP for the proxy, zero for whole IP packets).
	overhead int
	deliver  func(*packet) error
	epoch    time.Time
	// wake tells run that a packet became the earliest pending one.
	wake chan struct{}
	c    counters

	mu  sync.Mutex
	rng *rand.Rand
	// bad is the Gilbert–Elliott channel state.
	bad bool
	// lineFree is when the rate limiter finishes the packets it has accepted.
	lineFree time.Duration
	backlog  timeRing
	// lastAt is the delivery time of the newest in-order packet; later packets are not
	// delivered before it, which keeps jitter from reordering.
	lastAt  time.Duration
	seq     uint64
	pending packetHeap
}

// newPipe returns a pipe for the direction of link whose impairment is imp. seed
// fixes its random decisions; callers wanting fresh randomness pass rand.Uint64().
func newPipe(link *Link, imp *atomic.Pointer[Impairment], overhead int, seed uint64, deliver func(*packet) error) *pipe {
	return &pipe{
		link:     link,
		imp:      imp,
		overhead: overhead,
		deliver:  deliver,
		epoch:    time.Now(),
		wake:     make(chan struct{}, 1),
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

func (p *pipe) now() time.Duration { return time.Since(p.epoch) }

// submit takes ownership of pkt: it is scheduled for delivery or dropped and freed.
func (p *pipe) submit(pkt *packet) {
	n := len(pkt.data)
	p.c.packetsIn.Add(1)
	p.c.bytesIn.Add(uint64(n))
	imp := p.imp.Load()
	wire := n + p.overhead

	if imp.Blackout || p.link.BlackedOut() {
		p.drop(pkt, &p.c.dropBlackout)
		return
	}
	if imp.MTU > 0 && wire > imp.MTU {
		p.drop(pkt, &p.c.dropMTU)
		return
	}

	p.mu.Lock()
	if p.lost(imp) {
		p.mu.Unlock()
		p.drop(pkt, &p.c.dropLoss)
		return
	}
	now := p.now()
	depart := now
	if imp.RateBitsPerSec > 0 {
		p.backlog.popThrough(now)
		if p.backlog.n >= imp.queueLimit() {
			p.mu.Unlock()
			p.drop(pkt, &p.c.dropQueue)
			return
		}
		depart = max(now, p.lineFree) + serialization(wire, imp.RateBitsPerSec)
		p.lineFree = depart
		p.backlog.push(depart)
	}
	delay := imp.Delay
	if imp.Jitter > 0 {
		delay += time.Duration(p.rng.Int64N(2*int64(imp.Jitter)+1)) - imp.Jitter
		delay = max(delay, 0)
	}
	at := depart + delay
	if imp.Reorder > 0 && p.rng.Float64() < imp.Reorder {
		// Held back without moving lastAt, so the packets behind it overtake it.
		at += imp.reorderDelay()
		p.c.reordered.Add(1)
	} else {
		at = max(at, p.lastAt)
		p.lastAt = at
	}
	p.schedule(pkt, at)
	if imp.Duplicate > 0 && p.rng.Float64() < imp.Duplicate {
		dup := newPacket(pkt.data)
		dup.dst = pkt.dst
		p.schedule(dup, at)
		p.c.duplicated.Add(1)
	}
	first := p.pending[0] == pkt
	p.mu.Unlock()

	if first {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// serialization is how long a packet of wire bytes occupies a link of rate bits/s.
func serialization(wire int, rate int64) time.Duration {
	return time.Duration(int64(wire) * 8 * int64(time.Second) / rate)
}

// lost advances the Gilbert–Elliott channel by one packet and decides whether the
// packet is lost. p.mu must be held.
func (p *pipe) lost(imp *Impairment) bool {
	if imp.PGoodToBad > 0 {
		if p.bad {
			if p.rng.Float64() < imp.pBadToGood() {
				p.bad = false
			}
		} else if p.rng.Float64() < imp.PGoodToBad {
			p.bad = true
		}
		loss := imp.LossInGood
		if p.bad {
			loss = imp.lossInBad()
		}
		if loss > 0 && p.rng.Float64() < loss {
			return true
		}
	} else {
		p.bad = false
	}
	return imp.Loss > 0 && p.rng.Float64() < imp.Loss
}

// schedule queues pkt for delivery at at. p.mu must be held.
func (p *pipe) schedule(pkt *packet, at time.Duration) {
	pkt.at = at
	pkt.seq = p.seq
	p.seq++
	heap.Push(&p.pending, pkt)
}

func (p *pipe) drop(pkt *packet, reason *atomic.Uint64) {
	reason.Add(1)
	if fn := p.link.onDrop.Load(); fn != nil {
		(*fn)(p.imp == &p.link.up, pkt.data)
	}
	freePacket(pkt)
}

// run delivers packets as they fall due until ctx ends, then frees what is pending.
func (p *pipe) run(ctx context.Context) {
	// Created stopped; each wait below resets it to the next delivery time.
	timer := time.NewTimer(0)
	timer.Stop()
	var due []*packet
	for {
		p.mu.Lock()
		now := p.now()
		for len(p.pending) > 0 && p.pending[0].at <= now {
			due = append(due, heap.Pop(&p.pending).(*packet))
		}
		wait := time.Duration(-1)
		if len(p.pending) > 0 {
			wait = p.pending[0].at - now
		}
		p.mu.Unlock()

		if len(due) > 0 {
			for i, pkt := range due {
				p.send(pkt)
				due[i] = nil
			}
			due = due[:0]
			// Sending took time: look at the clock again before sleeping.
			continue
		}

		var fire <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			p.discard()
			return
		case <-p.wake:
		case <-fire:
		}
		timer.Stop()
	}
}

func (p *pipe) send(pkt *packet) {
	if err := p.deliver(pkt); err != nil {
		p.c.sendErrors.Add(1)
	} else {
		p.c.packetsOut.Add(1)
		p.c.bytesOut.Add(uint64(len(pkt.data)))
	}
	freePacket(pkt)
}

// discard frees every pending packet; used when the pipe stops.
func (p *pipe) discard() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pkt := range p.pending {
		freePacket(pkt)
	}
	p.pending = nil
}
