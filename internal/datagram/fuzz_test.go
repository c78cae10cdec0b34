package datagram

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDecodeHeader feeds any bytes to the header codec: nothing panics, and whatever
// decodes re-encodes to exactly the bytes it came from, so each header has one byte form.
func FuzzDecodeHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, pkt []byte) {
		id, n, err := CircuitID(pkt)
		if err != nil {
			if out := Rewrite(nil, pkt, 1); out != nil {
				t.Fatalf("got Rewrite %x of a packet CircuitID refuses, want nothing appended", out)
			}
			return
		}
		head, err := AppendCircuitID(nil, id)
		if err != nil || !bytes.Equal(head, pkt[:n]) {
			t.Fatalf("got circuit ID %d re-encoded as %x (err %v), want %x", id, head, err, pkt[:n])
		}
		if out := Rewrite(nil, pkt, id); !bytes.Equal(out, pkt) {
			t.Fatalf("got Rewrite to the same ID %x, want %x", out, pkt)
		}
		moved := Rewrite(nil, pkt, id^1<<40)
		if got, m, err := CircuitID(moved); err != nil || got != id^1<<40 || !bytes.Equal(moved[m:], pkt[n:]) {
			t.Fatalf("got rewritten packet %x (id %d, err %v), want id %d before %x", moved, got, err, id^1<<40, pkt[n:])
		}

		frag, err := DecodeFragment(pkt[n:])
		if err != nil {
			return
		}
		body, err := EncodeFragment(nil, frag)
		if err != nil || !bytes.Equal(body, pkt[n:]) {
			t.Fatalf("got fragment %+v re-encoded as %x (err %v), want %x", frag, body, err, pkt[n:])
		}
	})
}

// Shape of the fragment streams FuzzReassemble builds.
const (
	fuzzOpLen       = 5  // bytes of fuzz input per fragment
	fuzzMessageIDs  = 8  // message IDs drawn from 0..7, so fragments collide
	fuzzSizeUnit    = 16 // payload bytes per unit of the size byte: up to 4,080
	fuzzMaxMessages = 4
	fuzzMaxBytes    = 8 << 10
	fuzzDeadline    = 100 * time.Millisecond
	fuzzTimeStep    = time.Millisecond // clock advance per unit of the time byte
)

// FuzzReassemble feeds random fragment streams to a small Reassembler: nothing panics,
// the memory bounds hold after every fragment, and every message delivered is one its
// fragments could have built.
//
// Each 5-byte op is a fragment: clock advance, message ID, index, count, payload size.
// Ops that do not encode (bad index or count) are fed as that bare header, to exercise
// refusal; FuzzDecodeHeader covers arbitrary bytes.
func FuzzReassemble(f *testing.F) {
	f.Fuzz(func(t *testing.T, ops []byte) {
		clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
		r := NewReassembler(ReassemblerConfig{
			Deadline:    fuzzDeadline,
			MaxMessages: fuzzMaxMessages,
			MaxBytes:    fuzzMaxBytes,
			Now:         clock.now,
		})
		var buf []byte
		for ; len(ops) >= fuzzOpLen; ops = ops[fuzzOpLen:] {
			clock.t = clock.t.Add(time.Duration(ops[0]) * fuzzTimeStep)
			frag := Fragment{
				MessageID: uint64(ops[1] % fuzzMessageIDs),
				Index:     ops[2],
				Count:     ops[3],
				Payload:   bytes.Repeat([]byte{ops[2]}, int(ops[4])*fuzzSizeUnit),
			}
			var err error
			buf, err = EncodeFragment(buf[:0], frag)
			refused := err != nil
			if refused {
				// The same header without payload: index or count out of range.
				buf = append(buf[:0], byte(frag.MessageID), frag.Index, frag.Count)
			}
			msg, ok, err := r.Add(buf)
			if refused && (ok || err == nil) {
				t.Fatalf("got Add(%x) = ok %v, err %v, want an error", buf, ok, err)
			}
			if n, b := r.Pending(); n > fuzzMaxMessages || b > fuzzMaxBytes {
				t.Fatalf("got %d messages and %d bytes pending, want at most %d and %d", n, b, fuzzMaxMessages, fuzzMaxBytes)
			}
			if ok && len(msg) > MaxMessageSize {
				t.Fatalf("got a %d-byte message, want at most %d", len(msg), MaxMessageSize)
			}
			// Each fragment's payload repeats its index, so a message is a run of
			// non-decreasing bytes: fragments 0, 1, 2... in order.
			for i := 1; ok && i < len(msg); i++ {
				if msg[i] < msg[i-1] {
					t.Fatalf("got message bytes %d then %d, want fragments in index order", msg[i-1], msg[i])
				}
			}
		}
		s := r.Stats()
		if s.DroppedIncomplete+s.DroppedEvicted > s.Fragments {
			t.Fatalf("got stats %+v: more messages dropped than fragments seen", s)
		}
	})
}
