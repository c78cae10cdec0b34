package seal

import (
	"bytes"
	"crypto/cipher"
	"errors"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

func testAEAD(t testing.TB, b byte) cipher.AEAD {
	t.Helper()
	aead, err := chacha20poly1305.New(bytes.Repeat([]byte{b}, chacha20poly1305.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return aead
}

func TestRoundTripInAnyOrder(t *testing.T) {
	s, o := NewSealer(testAEAD(t, 1)), NewOpener(testAEAD(t, 1))
	var sealed [][]byte
	for i := range 100 {
		sealed = append(sealed, s.Seal(nil, []byte{byte(i)}, []byte("aad")))
	}
	// Reordered within the window: every one opens, once, to what was sealed.
	for _, i := range []int{3, 0, 1, 99, 2, 50, 4} {
		out, newest, err := o.Open(nil, sealed[i], []byte("aad"))
		if err != nil || !bytes.Equal(out, []byte{byte(i)}) {
			t.Fatalf("open %d = %v, %v", i, out, err)
		}
		if newest != (i == 3 || i == 99) {
			t.Fatalf("open %d: newest = %v", i, newest)
		}
		if _, _, err := o.Open(nil, sealed[i], []byte("aad")); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay of %d: err = %v", i, err)
		}
	}
}

func TestRefusals(t *testing.T) {
	s, o := NewSealer(testAEAD(t, 1)), NewOpener(testAEAD(t, 1))
	first := s.Seal(nil, []byte("first"), nil)
	for range ReplayWindow + 1 {
		s.Seal(nil, []byte("x"), nil)
	}
	last := s.Seal(nil, []byte("last"), nil)
	if _, _, err := o.Open(nil, last, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := o.Open(nil, first, nil); !errors.Is(err, ErrReplay) {
		t.Fatalf("too old: err = %v", err)
	}
	fresh := s.Seal(nil, []byte("fresh"), []byte("a"))
	tampered := bytes.Clone(fresh)
	tampered[len(tampered)-1] ^= 1
	if _, _, err := o.Open(nil, tampered, []byte("a")); !errors.Is(err, ErrForged) {
		t.Fatalf("tampered: err = %v", err)
	}
	if _, _, err := o.Open(nil, fresh, []byte("b")); !errors.Is(err, ErrForged) {
		t.Fatalf("other aad: err = %v", err)
	}
	if _, _, err := NewOpener(testAEAD(t, 2)).Open(nil, fresh, []byte("a")); !errors.Is(err, ErrForged) {
		t.Fatalf("other key: err = %v", err)
	}
	if _, _, err := o.Open(nil, fresh[:Overhead-1], nil); !errors.Is(err, ErrShort) {
		t.Fatalf("short: err = %v", err)
	}
	// A forged datagram did not burn its sequence number: the real one still opens.
	if out, _, err := o.Open(nil, fresh, []byte("a")); err != nil || string(out) != "fresh" {
		t.Fatalf("after forgeries: %q, %v", out, err)
	}
}

func FuzzOpen(f *testing.F) {
	s := NewSealer(testAEAD(f, 1))
	f.Add(s.Seal(nil, []byte("telemetry"), nil))
	f.Add([]byte{})
	f.Add(make([]byte, Overhead))
	f.Fuzz(func(t *testing.T, b []byte) {
		o := NewOpener(testAEAD(t, 1))
		out, _, err := o.Open(nil, b, nil)
		if err == nil && len(out) != len(b)-Overhead {
			t.Fatalf("opened %d bytes from %d", len(out), len(b))
		}
	})
}
