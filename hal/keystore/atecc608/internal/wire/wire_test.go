package wire

import (
	"bytes"
	"testing"
)

func TestCRC16MatchesChipFrames(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte // a frame as seen on the wire, CRC included
	}{
		{"wake-response", WakeResponse[:]},
		// Command packets as published in Microchip application notes and examples.
		{"info-revision-command", []byte{0x07, OpInfo, 0x00, 0x00, 0x00, 0x03, 0x5D}},
		{"random-command", []byte{0x07, OpRandom, 0x00, 0x00, 0x00, 0x24, 0xCD}},
		{"read-serial-block-command", []byte{0x07, 0x02, 0x80, 0x00, 0x00, 0x09, 0xAD}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !CRCOK(tt.frame) {
				n := len(tt.frame) - CRCSize
				crc := CRC16(tt.frame[:n])
				t.Errorf("CRC = % x, want % x", []byte{byte(crc), byte(crc >> 8)}, tt.frame[n:])
			}
		})
	}
}

func TestCommandFramesCountAndCRC(t *testing.T) {
	p := Command(OpSign, SignModeExternal, 0x0102, []byte{0xAA})
	want := []byte{8, OpSign, SignModeExternal, 0x02, 0x01, 0xAA}
	if !bytes.Equal(p[:len(want)], want) {
		t.Errorf("got % x, want prefix % x", p, want)
	}
	if !CRCOK(p) {
		t.Errorf("CRC of % x does not check", p)
	}
}
