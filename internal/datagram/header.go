package datagram

import (
	"errors"
	"fmt"

	"github.com/umbranet/umbra/third_party/quic-go/quicvarint"
)

// Header sizes and limits.
const (
	// MaxCircuitID is the largest circuit ID a varint can carry, 2^62-1.
	MaxCircuitID = quicvarint.Max
	// MaxCircuitIDLen is the longest circuit ID encoding. Split reserves it in every
	// fragment, so a router may rewrite any ID to any other without overflowing the hop.
	MaxCircuitIDLen = 8
	// MessageIDLimit is where a Splitter's message IDs wrap back to zero. It keeps the
	// message ID within a 2-byte varint; reusing an ID only matters while the earlier
	// message is still incomplete, which needs 16,384 messages on one circuit inside
	// one reassembly deadline (32,768 messages/s at the 500 ms default).
	MessageIDLimit = 1 << 14
	// MaxFragments caps the fragments of one message, so the fragments a Reassembler
	// has seen fit one uint64 bitmask. 64 fragments carry MaxMessageSize whenever a
	// fragment holds at least ⌈65,507/64⌉ = 1,024 bytes; see FragmentCapacity.
	MaxFragments = 64
	// MaxMessageSize is the largest message a UDP circuit carries: the largest UDP payload
	// over IPv4 (65,535 − 20 IP header − 8 UDP header).
	MaxMessageSize = 65_507

	// maxMessageIDLen is the longest message ID a Splitter writes (IDs < MessageIDLimit).
	maxMessageIDLen = 2
	// fragFieldLen is the fragment index byte plus the fragment count byte.
	fragFieldLen = 2
)

// Errors the codec returns, wrapped with the field at fault; test with errors.Is.
var (
	// ErrTruncated means the packet ends inside a header field.
	ErrTruncated = errors.New("datagram: truncated header")
	// ErrOverlongVarint means a varint used more bytes than its value needs; umbra
	// accepts only the shortest encoding so each header has a single byte form.
	ErrOverlongVarint = errors.New("datagram: over-long varint")
	// ErrVarintRange means a value to encode exceeds 2^62-1.
	ErrVarintRange = errors.New("datagram: value does not fit a varint")
	// ErrFragmentCount means the fragment count is 0 or above MaxFragments.
	ErrFragmentCount = errors.New("datagram: bad fragment count")
	// ErrFragmentIndex means the fragment index is not below the fragment count.
	ErrFragmentIndex = errors.New("datagram: fragment index out of range")
)

// Fragment is the end-to-end part of a datagram: one piece of one message.
type Fragment struct {
	// MessageID identifies the message within its circuit and direction.
	MessageID uint64
	// Index is this fragment's position, 0 ≤ Index < Count.
	Index uint8
	// Count is the number of fragments in the message; 1 means unfragmented.
	Count uint8
	// Payload is this fragment's share of the message. DecodeFragment aliases its input.
	Payload []byte
}

// CircuitID reads the circuit ID at the start of pkt and returns it with the number of
// bytes it occupies; pkt[headerLen:] is the sealed end-to-end part.
func CircuitID(pkt []byte) (id uint64, headerLen int, err error) {
	return parseVarint(pkt, "circuit ID")
}

// AppendCircuitID appends the circuit header for id to dst; the caller then appends
// the sealed end-to-end part.
func AppendCircuitID(dst []byte, id uint64) ([]byte, error) {
	if id > MaxCircuitID {
		return dst, fmt.Errorf("%w: circuit ID %d", ErrVarintRange, id)
	}
	return quicvarint.Append(dst, id), nil
}

// Rewrite appends pkt to dst with its circuit ID replaced by newID, the header
// re-encoded (it may grow or shrink) and the rest copied untouched. It allocates
// nothing when dst has room. dst must not overlap pkt. If pkt has no valid circuit ID
// or newID > MaxCircuitID it returns dst unchanged; routers call CircuitID first
// anyway, to look newID up.
func Rewrite(dst, pkt []byte, newID uint64) []byte {
	_, n, err := parseVarint(pkt, "circuit ID")
	if err != nil || newID > MaxCircuitID {
		return dst
	}
	dst = quicvarint.Append(dst, newID)
	return append(dst, pkt[n:]...)
}

// EncodeFragment appends the end-to-end encoding of f to dst: message ID, index,
// count, payload.
func EncodeFragment(dst []byte, f Fragment) ([]byte, error) {
	if f.MessageID > quicvarint.Max {
		return dst, fmt.Errorf("%w: message ID %d", ErrVarintRange, f.MessageID)
	}
	if err := checkFragment(f.Index, f.Count); err != nil {
		return dst, err
	}
	dst = quicvarint.Append(dst, f.MessageID)
	dst = append(dst, f.Index, f.Count)
	return append(dst, f.Payload...), nil
}

// DecodeFragment parses an opened end-to-end part. The returned Payload aliases b.
func DecodeFragment(b []byte) (Fragment, error) {
	id, n, err := parseVarint(b, "message ID")
	if err != nil {
		return Fragment{}, err
	}
	if len(b) < n+fragFieldLen {
		return Fragment{}, fmt.Errorf("%w: fragment field needs %d bytes, have %d",
			ErrTruncated, fragFieldLen, len(b)-n)
	}
	f := Fragment{MessageID: id, Index: b[n], Count: b[n+1], Payload: b[n+fragFieldLen:]}
	if err := checkFragment(f.Index, f.Count); err != nil {
		return Fragment{}, err
	}
	return f, nil
}

// checkFragment validates a fragment field.
func checkFragment(index, count uint8) error {
	if count == 0 || count > MaxFragments {
		return fmt.Errorf("%w: %d, want 1 to %d", ErrFragmentCount, count, MaxFragments)
	}
	if index >= count {
		return fmt.Errorf("%w: index %d of %d fragments", ErrFragmentIndex, index, count)
	}
	return nil
}

// parseVarint reads the varint field named field and refuses encodings longer than
// needed.
func parseVarint(b []byte, field string) (v uint64, n int, err error) {
	if len(b) == 0 {
		return 0, 0, fmt.Errorf("%w: %s missing", ErrTruncated, field)
	}
	v, n, err = quicvarint.Parse(b)
	if err != nil {
		// The two high bits of the first byte give the length: 1, 2, 4 or 8 bytes.
		return 0, 0, fmt.Errorf("%w: %s needs %d bytes, have %d", ErrTruncated, field, 1<<(b[0]>>6), len(b))
	}
	if quicvarint.Len(v) != n {
		return 0, 0, fmt.Errorf("%w: %s %d in %d bytes, shortest is %d", ErrOverlongVarint, field, v, n, quicvarint.Len(v))
	}
	return v, n, nil
}
