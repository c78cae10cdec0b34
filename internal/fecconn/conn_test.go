package fecconn

import (
	"bytes"
	"context"
	"crypto/sha256"
	mrand "math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"umbra/internal/linksim"
)

func TestQUICTransferByteExactAtTenPercentLossEachWay(t *testing.T) {
	const size = 4 << 20
	lossy := linksim.Impairment{Loss: 0.10, Delay: 5 * time.Millisecond}
	p := newQUICPair(t, pairOpts{
		server: &Config{},
		client: &Config{Initiate: true},
		via:    viaLink(t, lossy, lossy),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	data := pattern(1, size)
	sum, n, took, err := transfer(ctx, p, data)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || sum != sha256.Sum256(data) {
		t.Fatalf("got %d bytes (sha256 %x), want %d bytes (sha256 %x)", n, sum[:8], size, sha256.Sum256(data))
	}
	cs, ss := p.clientFEC.Stats(), p.serverFEC.Stats()
	t.Logf("%d MB in %v; client %+v; server %+v", size>>20, took, cs, ss)
	if ss.Recovered == 0 || cs.Recovered == 0 {
		t.Errorf("recovered %d at the server, %d at the client, want some each way", ss.Recovered, cs.Recovered)
	}
	if ss.DataSent == 0 {
		t.Errorf("server sent %d protected packets, want it to answer the client's shim in kind", ss.DataSent)
	}
}

func TestAWrappedServerTalksPlainQUICToAPlainClient(t *testing.T) {
	p := newQUICPair(t, pairOpts{server: &Config{}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := pattern(3, 256<<10)
	sum, n, _, err := transfer(ctx, p, data)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(data) || sum != sha256.Sum256(data) {
		t.Fatalf("got %d bytes, want %d byte-exact", n, len(data))
	}
	s := p.serverFEC.Stats()
	if s.DataSent != 0 || s.ParitySent != 0 || s.PassedOut == 0 || s.PassedIn == 0 {
		t.Fatalf("server stats %+v: want nothing protected, everything passed through", s)
	}
}

func TestNonShimPacketsPassUnchangedBothWays(t *testing.T) {
	p := newQUICPair(t, pairOpts{server: &Config{}, client: &Config{Initiate: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// umbra's own 0x01 packets: sent by the client's transport, read by the server's.
	msg := append([]byte{0x01}, []byte("lane packet, not QUIC, not shim")...)
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 2048)
		n, _, err := p.serverTr.ReadNonQUICPacket(ctx, buf)
		if err == nil {
			got <- bytes.Clone(buf[:n])
		}
		close(got)
	}()
	// Sent until it arrives: the read may start after the first one.
	for {
		if _, err := p.clientTr.WriteTo(msg, p.serverRaw.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-got:
			if !bytes.Equal(b, msg) {
				t.Fatalf("server read % x, want % x", b, msg)
			}
			if s := p.clientFEC.Stats(); s.PassedOut == 0 {
				t.Fatalf("client stats %+v: want the 0x01 packet passed through", s)
			}
			return
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("the 0x01 packet never reached the server's transport")
		}
	}
}

func TestGarbageFromAPeerIsDroppedAndTheTransferStaysExact(t *testing.T) {
	lossy := linksim.Impairment{Loss: 0.05}
	p := newQUICPair(t, pairOpts{server: &Config{}, client: &Config{Initiate: true}, via: viaLink(t, lossy, lossy)})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Garbage from the client's own address, straight to the server: truncated,
	// forged and random shim packets.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		r := mrand.New(mrand.NewPCG(4, 4))
		to := p.serverRaw.LocalAddr()
		for i := 0; i < 20_000; i++ {
			b := make([]byte, r.IntN(1600))
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			if len(b) > 0 {
				b[0] = Magic
			}
			if len(b) > 1 && i%2 == 0 {
				b[1] = byte(i/2%2) * kindParity
			}
			p.clientRaw.WriteTo(b, to)
			select {
			case <-stop:
				return
			default:
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // paced, not to starve the real traffic
			}
		}
	}()
	data := pattern(5, 2<<20)
	sum, n, _, err := transfer(ctx, p, data)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(data) || sum != sha256.Sum256(data) {
		t.Fatalf("got %d bytes, want %d byte-exact", n, len(data))
	}
	s := p.serverFEC.Stats()
	if s.Malformed+s.Stale+s.Corrupt == 0 {
		t.Errorf("server stats %+v: want garbage counted as malformed, stale or corrupt", s)
	}
	t.Logf("server %+v", s)
}

func TestARebuiltPacketCorruptedByForgedParityIsRejectedByQUIC(t *testing.T) {
	var dropped, forged atomic.Int64
	corrupt := func(pkt []byte) []byte {
		if len(pkt) < 2 || pkt[0] != Magic {
			return pkt
		}
		switch kind(pkt) {
		case kindData:
			// Lose the fourth packet of every block, so each block is rebuilt.
			if pkt[1]&indexMask == 3 {
				dropped.Add(1)
				return nil
			}
		case kindParity:
			// Flip one byte of the shard past the length prefix: the rebuilt packet
			// keeps its length and padding but carries a wrong byte.
			if i := parityHeaderLen + lenPrefix + 10; i < len(pkt) {
				pkt[i] ^= 0xff
				forged.Add(1)
			}
		}
		return pkt
	}
	p := newQUICPair(t, pairOpts{
		server: &Config{}, client: &Config{Initiate: true},
		via: func(server net.Addr) net.Addr { return newMangler(t, server, corrupt) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data := pattern(6, 1<<20)
	sum, n, _, err := transfer(ctx, p, data)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(data) || sum != sha256.Sum256(data) {
		t.Fatalf("got %d bytes, want %d byte-exact", n, len(data))
	}
	s := p.serverFEC.Stats()
	if s.Recovered == 0 || forged.Load() == 0 || dropped.Load() == 0 {
		t.Fatalf("rebuilt %d from %d forged parity packets for %d dropped: want corrupted rebuilds handed to QUIC", s.Recovered, forged.Load(), dropped.Load())
	}
	t.Logf("%d corrupt packets handed to QUIC, %d refused by the shim; QUIC delivered the stream byte-exact", s.Recovered, s.Corrupt)
}
