package atecc608sim

import (
	"bytes"
	"errors"
	"testing"

	"github.com/umbranet/umbra/hal/keystore/atecc608/internal/wire"
)

// wake sends the wake pulse and returns what the chip answers.
func wake(t *testing.T, c *Chip) []byte {
	t.Helper()
	if err := c.Tx(generalCall, []byte{0x00}, nil); !errors.Is(err, ErrNACK) {
		t.Fatalf("wake pulse err = %v, want %v", err, ErrNACK)
	}
	r := make([]byte, wire.StatusResponseSize)
	if err := c.Tx(DefaultAddr, nil, r); err != nil {
		t.Fatalf("read wake response: %v", err)
	}
	return r
}

// run sends one command packet (as built, CRC included) and reads the whole response.
func run(t *testing.T, c *Chip, pkt []byte) []byte {
	t.Helper()
	if err := c.Tx(DefaultAddr, append([]byte{wire.WordCommand}, pkt...), nil); err != nil {
		t.Fatalf("send: %v", err)
	}
	r := make([]byte, wire.MaxResponseSize)
	if err := c.Tx(DefaultAddr, nil, r); err != nil {
		t.Fatalf("read: %v", err)
	}
	return r[:r[0]]
}

func TestWakeAnswers0x11(t *testing.T) {
	c := New(Config{})
	if got := wake(t, c); !bytes.Equal(got, wire.WakeResponse[:]) {
		t.Errorf("wake response = % x, want % x", got, wire.WakeResponse)
	}
}

func TestSleepingAndIdleChipsNACK(t *testing.T) {
	c := New(Config{})
	if err := c.Tx(DefaultAddr, nil, make([]byte, 4)); !errors.Is(err, ErrNACK) {
		t.Errorf("asleep: err = %v, want %v", err, ErrNACK)
	}
	wake(t, c)
	if err := c.Tx(DefaultAddr, []byte{wire.WordIdle}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Tx(DefaultAddr, nil, make([]byte, 4)); !errors.Is(err, ErrNACK) {
		t.Errorf("idle: err = %v, want %v", err, ErrNACK)
	}
}

func TestAbsentChipNACKsEverything(t *testing.T) {
	c := New(Config{Absent: true})
	for _, addr := range []uint16{generalCall, DefaultAddr} {
		if err := c.Tx(addr, []byte{0}, nil); !errors.Is(err, ErrNACK) {
			t.Errorf("Tx(%#x) err = %v, want %v", addr, err, ErrNACK)
		}
	}
}

func TestCommandAnswers(t *testing.T) {
	badCRC := wire.Command(wire.OpInfo, wire.InfoModeRevision, 0, nil)
	badCRC[len(badCRC)-1] ^= 0x01
	digest := bytes.Repeat([]byte{1}, wire.DigestSize)

	tests := []struct {
		name       string
		pkt        []byte
		wantStatus int // -1: a data response of wantLen bytes
		wantLen    int
	}{
		{"bad-crc-answers-0xff", badCRC, wire.StatusCommCRCFail, 0},
		{"short-packet-answers-0xff", []byte{0x03, 0x30, 0x00}, wire.StatusCommCRCFail, 0},
		{"unknown-opcode-is-a-parse-error", wire.Command(0x77, 0, 0, nil), wire.StatusParseError, 0},
		{"info-returns-revision", wire.Command(wire.OpInfo, wire.InfoModeRevision, 0, nil), -1, wire.RevisionSize},
		{"random-returns-32-bytes", wire.Command(wire.OpRandom, wire.RandomModeSeedUpdate, 0, nil), -1, wire.RandomSize},
		{"nonce-passthrough-succeeds", wire.Command(wire.OpNonce, wire.NonceModePassthrough, 0, digest), wire.StatusSuccess, 0},
		{"nonce-with-short-input-is-a-parse-error", wire.Command(wire.OpNonce, wire.NonceModePassthrough, 0, digest[:20]), wire.StatusParseError, 0},
		{"genkey-in-slot-0-returns-public-key", wire.Command(wire.OpGenKey, wire.GenKeyModePrivate, 0, nil), -1, wire.PublicKeySize},
		{"genkey-in-slot-9-is-an-execution-error", wire.Command(wire.OpGenKey, wire.GenKeyModePrivate, 9, nil), wire.StatusExecution, 0},
		{"public-key-of-empty-slot-is-an-execution-error", wire.Command(wire.OpGenKey, wire.GenKeyModePublic, 1, nil), wire.StatusExecution, 0},
		{"sign-without-key-is-an-execution-error", wire.Command(wire.OpSign, wire.SignModeExternal, 2, nil), wire.StatusExecution, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(Config{})
			wake(t, c)
			got := run(t, c, tt.pkt)
			if !wire.CRCOK(got) {
				t.Fatalf("response % x fails its CRC", got)
			}
			data := got[wire.CountSize : len(got)-wire.CRCSize]
			if tt.wantStatus >= 0 {
				if len(got) != wire.StatusResponseSize || int(data[0]) != tt.wantStatus {
					t.Errorf("response = % x, want status 0x%02x", got, tt.wantStatus)
				}
				return
			}
			if len(data) != tt.wantLen {
				t.Errorf("data = %d bytes, want %d", len(data), tt.wantLen)
			}
		})
	}
}

func TestSignNeedsAFreshNonceEachTime(t *testing.T) {
	c := New(Config{})
	wake(t, c)
	run(t, c, wire.Command(wire.OpGenKey, wire.GenKeyModePrivate, 0, nil))
	run(t, c, wire.Command(wire.OpNonce, wire.NonceModePassthrough, 0, make([]byte, wire.DigestSize)))
	sign := wire.Command(wire.OpSign, wire.SignModeExternal, 0, nil)
	if got := run(t, c, sign); len(got) != wire.CountSize+wire.SignatureSize+wire.CRCSize {
		t.Fatalf("first sign = % x, want a signature", got)
	}
	if got := run(t, c, sign); !bytes.Equal(got, wire.Status(wire.StatusExecution)) {
		t.Errorf("second sign = % x, want % x", got, wire.Status(wire.StatusExecution))
	}
}

func TestCorruptResponsesDamagesOnlyTheNextN(t *testing.T) {
	c := New(Config{})
	wake(t, c)
	c.CorruptResponses(1)
	info := wire.Command(wire.OpInfo, wire.InfoModeRevision, 0, nil)
	if got := run(t, c, info); wire.CRCOK(got) {
		t.Errorf("first response % x passes its CRC, want it damaged", got)
	}
	if got := run(t, c, info); !wire.CRCOK(got) {
		t.Errorf("second response % x fails its CRC, want it intact", got)
	}
	if got := c.Stats().CorruptedResponses; got != 1 {
		t.Errorf("corrupted responses = %d, want 1", got)
	}
}
