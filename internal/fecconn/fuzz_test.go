package fecconn

import (
	"bytes"
	"testing"
	"time"
)

// fuzzConfig is the small code the fuzz targets use.
var fuzzConfig = Config{K: 4, M: 2, FlushDelay: 5 * time.Millisecond, Hold: 20 * time.Millisecond, MaxPacket: 200}

// FuzzReceiver feeds any packets to a receiver: nothing panics, no packet over the
// payload limit is released, the hold stays within the window, and no more packets
// are released than were taken or rebuilt.
//
// The input is a stream of ops: a time byte (clock advance in ms), a length byte L,
// then L bytes of packet, to which Magic is prepended.
func FuzzReceiver(f *testing.F) {
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := newTestReceiver(t, fuzzConfig)
		now := t0
		for len(ops) >= 2 {
			now = now.Add(time.Duration(ops[0]) * time.Millisecond)
			n := min(int(ops[1]), len(ops)-2)
			pkt := append([]byte{Magic}, ops[2:2+n]...)
			ops = ops[2+n:]
			_ = r.add(pkt, now)
			if !r.deadline.IsZero() && !now.Before(r.deadline) {
				t.Fatalf("deadline %v not after now %v", r.deadline, now)
			}
			r.tick(now)
			if r.held < 0 || r.held > window {
				t.Fatalf("held %d, want 0 to %d", r.held, window)
			}
		}
		r.tick(now.Add(time.Hour))
		for _, g := range r.got {
			if len(g) > fuzzConfig.MaxPacket-Overhead {
				t.Fatalf("released %d bytes, want at most %d", len(g), fuzzConfig.MaxPacket-Overhead)
			}
		}
		if in := r.stats.dataReceived.Load() + r.stats.recovered.Load(); uint64(len(r.got)) > in {
			t.Fatalf("released %d packets of %d taken or rebuilt", len(r.got), in)
		}
	})
}

// FuzzRoundTrip sends packets through a sender and a receiver, losing those the
// input says: every packet released is one that was sent, in the order sent, none
// twice, and a block that lost at most its parity count releases all its packets.
//
// The input is a stream of ops: a length byte (packet length, 1..255 after the
// QUIC-like first byte) and a loss byte (bit 0 loses the data packet; once a block
// closes, bits 1..7 of its last packet's loss byte lose its parity packets).
func FuzzRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, ops []byte) {
		cfg, _ := fuzzConfig.normalize()
		var st counters
		s, err := newSender(cfg, &st)
		if err != nil {
			t.Fatal(err)
		}
		r := newTestReceiver(t, cfg)
		var sent [][]byte
		now := t0
		for i := 0; i+1 < len(ops); i += 2 {
			n := min(int(ops[i]), cfg.MaxPacket-Overhead-1)
			pkt := bytes.Repeat([]byte{byte(i)}, 1+n)
			pkt[0] = 0x40 | byte(len(sent)%64)
			sent = append(sent, pkt)
			loss := ops[i+1]
			j := 0
			emit := func(w []byte) error {
				lose := loss&1 != 0
				if kind(w) == kindParity {
					lose = loss&(2<<j) != 0
					j++
				}
				if !lose {
					if err := r.add(bytes.Clone(w), now); err != nil {
						t.Fatalf("receiver refused a sender's packet: %v", err)
					}
				}
				return nil
			}
			if err := s.send(pkt, now, emit); err != nil {
				t.Fatal(err)
			}
			now = now.Add(time.Millisecond)
		}
		if err := s.poll(now.Add(time.Hour), func(w []byte) error { return r.add(bytes.Clone(w), now) }); err != nil {
			t.Fatal(err)
		}
		r.tick(now.Add(time.Hour))
		k := 0
		for _, g := range r.got {
			for k < len(sent) && !bytes.Equal(sent[k], g) {
				k++
			}
			if k == len(sent) {
				t.Fatalf("released % x, not a packet sent after the previous one released", g[:min(8, len(g))])
			}
			k++
		}
	})
}
