package datagram

import (
	"errors"
	"fmt"
)

// fragmentHeaderReserve is the header room Split keeps in every fragment: the longest
// circuit ID (so routers can rewrite it freely), the longest message ID a Splitter
// writes, and the index and count bytes.
const fragmentHeaderReserve = MaxCircuitIDLen + maxMessageIDLen + fragFieldLen

// Errors Split returns, wrapped with the sizes at fault; test with errors.Is.
var (
	// ErrTooLarge means a payload exceeds MaxMessageSize or needs more than
	// MaxFragments fragments at this datagram size.
	ErrTooLarge = errors.New("datagram: payload too large")
	// ErrDatagramTooSmall means maxDatagram leaves no room for payload after the
	// header and the per-fragment overhead.
	ErrDatagramTooSmall = errors.New("datagram: max datagram size too small")
)

// FragmentCapacity is how many payload bytes one fragment carries when each QUIC
// datagram holds maxDatagram bytes and sealing adds overhead bytes per fragment. It is
// maxDatagram − 12 (fragmentHeaderReserve) − overhead, and ≤ 0 when nothing fits.
//
// With quic-go's ~1,243-byte datagrams at its 1,280-byte initial packet size and a
// 24-byte overhead (16-byte AEAD tag, 8-byte sequence number), a fragment carries
// 1,207 bytes: 1,400-byte RTP packets take 2 fragments and 65,507-byte UDP payloads
// take 55 of the MaxFragments 64. Any maxDatagram ≥ 1,024 + 12 + overhead carries
// MaxMessageSize.
func FragmentCapacity(maxDatagram, overhead int) int {
	return maxDatagram - fragmentHeaderReserve - overhead
}

// Splitter cuts payloads into fragments for one circuit direction and numbers the
// messages. The fragments it returns live in buffers it reuses, so they are valid
// until the next call to Split. It is not safe for concurrent use.
type Splitter struct {
	overhead int
	nextID   uint64
	buf      []byte
	frags    [][]byte
}

// NewSplitter returns a Splitter for fragments that each grow by overhead bytes when
// sealed (e.g. 16-byte AEAD tag + 8-byte sequence number = 24).
func NewSplitter(overhead int) *Splitter {
	return &Splitter{overhead: overhead, frags: make([][]byte, 0, MaxFragments)}
}

// Split encodes payload as one message: fragments (end-to-end parts, unsealed, without
// circuit ID) that each fit maxDatagram once sealed and given a circuit header. A
// payload that fits one fragment, including an empty one, becomes a single fragment of
// count 1. Each call uses the next message ID, wrapping at MessageIDLimit.
func (s *Splitter) Split(payload []byte, maxDatagram int) ([][]byte, error) {
	if len(payload) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, max %d", ErrTooLarge, len(payload), MaxMessageSize)
	}
	capacity := FragmentCapacity(maxDatagram, s.overhead)
	if capacity <= 0 {
		return nil, fmt.Errorf("%w: %d bytes, need more than %d for header and %d overhead",
			ErrDatagramTooSmall, maxDatagram, fragmentHeaderReserve, s.overhead)
	}
	count := max(1, (len(payload)+capacity-1)/capacity)
	if count > MaxFragments {
		return nil, fmt.Errorf("%w: %d bytes need %d fragments of %d, max %d",
			ErrTooLarge, len(payload), count, capacity, MaxFragments)
	}

	id := s.nextID
	s.nextID = (s.nextID + 1) % MessageIDLimit

	// Size the buffer once so the fragment slices below never point at a stale array.
	need := len(payload) + count*(maxMessageIDLen+fragFieldLen)
	if cap(s.buf) < need {
		s.buf = make([]byte, 0, need)
	}
	buf := s.buf[:0]
	frags := s.frags[:0]
	for i := range count {
		chunk := payload[i*capacity : min(len(payload), (i+1)*capacity)]
		start := len(buf)
		// Cannot fail: id < MessageIDLimit and 0 ≤ i < count ≤ MaxFragments.
		buf, _ = EncodeFragment(buf, Fragment{MessageID: id, Index: uint8(i), Count: uint8(count), Payload: chunk})
		frags = append(frags, buf[start:len(buf):len(buf)])
	}
	s.buf, s.frags = buf, frags
	return frags, nil
}
