package resume

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// fuzzSeeds are peer streams worth starting from; the files in testdata/fuzz hold more.
func fuzzSeeds() [][]byte {
	h := helloBytes(minWindow, 0)
	data := append(appendDataHeader(nil, 5), "hello"...)
	return [][]byte{
		h,
		append(append([]byte{}, h...), data...),
		append(append(append([]byte{}, h...), data...), appendOffsetFrame(nil, frameFin, 5)...),
		append(append([]byte{}, h...), appendOffsetFrame(nil, frameAck, 0)...),
		append(append([]byte{}, h...), frameReset),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		append(append([]byte{}, h...), 0x01, 0, 0, 0, 9, 'a'),
	}
}

// FuzzDecode checks that the header and frame decoders never panic, enforce their
// limits, and accept only what their encoders produce byte for byte.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < headerLen {
			return
		}
		h, err := parseHello(in[:headerLen])
		if err == nil {
			if re := appendHello(nil, h); !bytes.Equal(re, in[:headerLen]) {
				t.Fatalf("header % x decodes to %+v, which encodes as % x", in[:headerLen], h, re)
			}
		}
		r := bufio.NewReader(bytes.NewReader(in[headerLen:]))
		var scratch [8]byte
		for consumed := headerLen; ; {
			fr, err := readFrame(r, &scratch)
			if err != nil {
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %q spans lines", err)
				}
				return
			}
			var re []byte
			switch fr.typ {
			case frameData:
				if fr.val == 0 || fr.val > maxPayload {
					t.Fatalf("data frame of %d bytes accepted", fr.val)
				}
				re = appendDataHeader(nil, int(fr.val))
			case frameAck, frameFin:
				re = appendOffsetFrame(nil, fr.typ, fr.val)
			case frameReset:
				re = []byte{frameReset}
			default:
				t.Fatalf("frame type 0x%02x accepted", fr.typ)
			}
			if !bytes.Equal(re, in[consumed:consumed+len(re)]) {
				t.Fatalf("frame % x re-encodes as % x", in[consumed:consumed+len(re)], re)
			}
			consumed += len(re)
			if fr.typ == frameData {
				n, _ := r.Discard(int(fr.val))
				consumed += n
			}
		}
	})
}

// FuzzPeerStream feeds arbitrary bytes to a Conn as its peer's stream: Serve must fail
// with a one-line error or end, never panic, and what the Conn delivers must be a prefix
// of the data frames' payloads in order (nothing invented, repeated or reordered).
func FuzzPeerStream(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := New(Config{Window: minWindow})
		defer c.Abort(nil)
		err := c.Serve(context.Background(), newFakePeer(in))
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("Serve error %q spans lines", err)
		}
		st := c.Stats()
		if st.Received > minWindow {
			t.Fatalf("received %d bytes, more than the %d-byte window", st.Received, minWindow)
		}
		if c.Err() != nil {
			return // the peer reset: unread bytes are gone by design
		}
		got := make([]byte, st.Received)
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reading the %d received bytes: %v", st.Received, err)
		}
		want := payloads(in)
		if !bytes.HasPrefix(want, got) {
			t.Fatalf("delivered %q, not a prefix of the data frames' payloads %q", got, want)
		}
	})
}

// payloads returns the concatenated payloads of the data frames in a peer stream, up to
// the first frame that does not decode.
func payloads(in []byte) []byte {
	if len(in) < headerLen {
		return nil
	}
	r := bufio.NewReader(bytes.NewReader(in[headerLen:]))
	var out []byte
	var scratch [8]byte
	for {
		fr, err := readFrame(r, &scratch)
		if err != nil {
			return out
		}
		if fr.typ == frameData {
			p := make([]byte, fr.val)
			n, _ := io.ReadFull(r, p)
			out = append(out, p[:n]...)
		}
	}
}
