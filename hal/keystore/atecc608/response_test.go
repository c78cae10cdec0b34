package atecc608

import (
	"bytes"
	"errors"
	"testing"

	"github.com/umbranet/umbra/hal/keystore/atecc608/internal/wire"
)

func TestParseResponse(t *testing.T) {
	sig := bytes.Repeat([]byte{0xAB}, wire.SignatureSize)
	badCRC := wire.Response(sig)
	badCRC[len(badCRC)-1] ^= 0x01

	tests := []struct {
		name     string
		buf      []byte
		wantData []byte
		wantErr  error
	}{
		{"signature-response-returns-its-data", wire.Response(sig), sig, nil},
		{"success-status-returns-no-data", wire.Status(wire.StatusSuccess), nil, nil},
		{"bytes-past-count-are-ignored", append(wire.Response(sig), 0xFF, 0xFF), sig, nil},
		{"execution-status-is-an-error", wire.Status(wire.StatusExecution), nil, ErrExecution},
		{"parse-status-is-an-error", wire.Status(wire.StatusParseError), nil, ErrParse},
		{"comm-status-is-an-error", wire.Status(wire.StatusCommCRCFail), nil, ErrComm},
		{"watchdog-status-is-an-error", wire.Status(wire.StatusWatchdog), nil, ErrWatchdog},
		{"wake-status-is-an-error", wire.WakeResponse[:], nil, ErrAfterWake},
		{"unknown-status-is-an-error", wire.Status(0x42), nil, ErrStatus},
		{"bad-crc-is-an-error", badCRC, nil, ErrCRC},
		{"count-past-end-is-malformed", wire.Response(sig)[:10], nil, ErrResponse},
		{"count-below-four-is-malformed", []byte{0x03, 0x00, 0x00, 0x00}, nil, ErrResponse},
		{"empty-is-malformed", nil, nil, ErrResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := parseResponse(tt.buf)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(data, tt.wantData) {
				t.Errorf("data = % x, want % x", data, tt.wantData)
			}
		})
	}
}

// FuzzParseResponse checks the decoder never panics and only accepts frames whose count
// and CRC hold. Seeds are in testdata/fuzz/FuzzParseResponse.
func FuzzParseResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, buf []byte) {
		data, err := parseResponse(buf)
		if err != nil {
			if data != nil {
				t.Errorf("data = % x with err %v, want nil", data, err)
			}
			return
		}
		n := int(buf[0])
		if n < wire.StatusResponseSize || n > len(buf) {
			t.Fatalf("accepted count %d with %d bytes", n, len(buf))
		}
		if !wire.CRCOK(buf[:n]) {
			t.Fatalf("accepted bad CRC in % x", buf[:n])
		}
		switch {
		case n == wire.StatusResponseSize && (buf[1] != wire.StatusSuccess || data != nil):
			t.Fatalf("status frame % x gave data % x, want success and none", buf[:n], data)
		case n > wire.StatusResponseSize && len(data) != n-wire.CountSize-wire.CRCSize:
			t.Fatalf("got %d data bytes, want %d", len(data), n-wire.CountSize-wire.CRCSize)
		}
	})
}
