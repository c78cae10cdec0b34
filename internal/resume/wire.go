package resume

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The wire format (see doc.go): a fixed resume header from each side, then frames.
const (
	magic          = "UMRS"   // first bytes of every resume stream
	version        = 1        // the only version this package speaks
	headerLen      = 20       // magic(4) version(1) reserved(3) window(4) received(8)
	maxPayload     = 64 << 10 // largest data frame payload
	dataHeaderLen  = 5        // type(1) length(4)
	offsetFrameLen = 9        // type(1) offset(8): ack and fin

	minWindow = 4 << 10 // smallest receive window a peer may announce (and Config.Window is raised to)
	maxWindow = 1 << 30 // largest receive window a peer may announce (and Config.Window is capped to)
)

// Frame types.
const (
	frameData  byte = 0x01 // length(4) then payload: the next bytes of the stream
	frameAck   byte = 0x02 // offset(8): the sender has consumed this many bytes (+1 once it consumed the fin)
	frameFin   byte = 0x03 // offset(8): the sender's stream ends here; counts as one byte of sequence space
	frameReset byte = 0x04 // the sender has ended the connection abnormally
)

// hello is the resume header's content.
type hello struct {
	window uint32 // the sender's receive window: how far past its acknowledged offset the peer may send
	recvd  uint64 // how many bytes (fin included) the sender has received from the peer
}

// appendHello appends h's encoding to b.
func appendHello(b []byte, h hello) []byte {
	b = append(b, magic...)
	b = append(b, version, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, h.window)
	return binary.BigEndian.AppendUint64(b, h.recvd)
}

// parseHello decodes a resume header; b must hold headerLen bytes.
func parseHello(b []byte) (hello, error) {
	if len(b) != headerLen {
		return hello{}, fmt.Errorf("resume: header is %d bytes, want %d", len(b), headerLen)
	}
	if string(b[:4]) != magic {
		return hello{}, fmt.Errorf("resume: bad magic %q, want %q: the peer is not a resume stream", b[:4], magic)
	}
	if b[4] != version {
		return hello{}, fmt.Errorf("resume: peer speaks version %d, this end %d", b[4], version)
	}
	if b[5]|b[6]|b[7] != 0 {
		return hello{}, fmt.Errorf("resume: peer header has nonzero reserved bytes % x", b[5:8])
	}
	h := hello{window: binary.BigEndian.Uint32(b[8:12]), recvd: binary.BigEndian.Uint64(b[12:20])}
	if h.window < minWindow || h.window > maxWindow {
		return hello{}, fmt.Errorf("resume: peer window %d outside [%d, %d]", h.window, minWindow, maxWindow)
	}
	return h, nil
}

// frame is one decoded frame header: its type and value (the payload length of a data
// frame, the offset of an ack or fin, zero for a reset).
type frame struct {
	typ byte
	val uint64
}

// errMidFrame reports a stream that ended inside a frame.
var errMidFrame = errors.New("resume: stream ended mid-frame")

// readFrame reads one frame header from r, using scratch for the fixed-size fields so
// that steady-state reads allocate nothing. A data frame's payload is left in r.
func readFrame(r *bufio.Reader, scratch *[8]byte) (frame, error) {
	t, err := r.ReadByte()
	if err != nil {
		return frame{}, err
	}
	switch t {
	case frameData:
		if _, err := io.ReadFull(r, scratch[:4]); err != nil {
			return frame{}, midFrame(err)
		}
		n := binary.BigEndian.Uint32(scratch[:4])
		if n == 0 || n > maxPayload {
			return frame{}, fmt.Errorf("resume: data frame of %d bytes outside [1, %d]", n, maxPayload)
		}
		return frame{typ: t, val: uint64(n)}, nil
	case frameAck, frameFin:
		if _, err := io.ReadFull(r, scratch[:8]); err != nil {
			return frame{}, midFrame(err)
		}
		return frame{typ: t, val: binary.BigEndian.Uint64(scratch[:8])}, nil
	case frameReset:
		return frame{typ: t}, nil
	default:
		return frame{}, fmt.Errorf("resume: unknown frame type 0x%02x", t)
	}
}

// midFrame turns an EOF inside a frame into errMidFrame and keeps other errors.
func midFrame(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errMidFrame
	}
	return err
}

// appendOffsetFrame appends an ack or fin frame.
func appendOffsetFrame(b []byte, typ byte, off uint64) []byte {
	return binary.BigEndian.AppendUint64(append(b, typ), off)
}

// appendDataHeader appends a data frame's header for a payload of n bytes.
func appendDataHeader(b []byte, n int) []byte {
	return binary.BigEndian.AppendUint32(append(b, frameData), uint32(n))
}
