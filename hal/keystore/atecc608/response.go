package atecc608

import (
	"fmt"

	"github.com/umbranet/umbra/hal/keystore/atecc608/internal/wire"
)

// parseResponse checks one response frame (count, data, CRC; bytes past count are
// ignored) and returns its data. A 4-byte frame is a status: success returns no data,
// any other status its error.
func parseResponse(buf []byte) ([]byte, error) {
	if len(buf) < wire.StatusResponseSize {
		return nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrResponse, len(buf), wire.StatusResponseSize)
	}
	n := int(buf[0])
	if n < wire.StatusResponseSize || n > len(buf) {
		return nil, fmt.Errorf("%w: count %d with %d bytes read", ErrResponse, n, len(buf))
	}
	frame := buf[:n]
	if !wire.CRCOK(frame) {
		return nil, ErrCRC
	}
	data := frame[wire.CountSize : n-wire.CRCSize]
	if n == wire.StatusResponseSize {
		return nil, statusErr(data[0])
	}
	return data, nil
}
