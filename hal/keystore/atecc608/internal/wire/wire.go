// Package wire holds the ATECC608 I2C framing shared by the driver and the emulated chip:
// word addresses, opcodes, modes, status codes, sizes and the CRC-16 that guards every
// packet. It owns no I/O and no policy (retries, timing and errors live in the driver).
package wire

// Word addresses: the first byte of every I2C write to the chip says what the write is.
const (
	WordReset   = 0x00 // reset the I/O buffer's address pointer
	WordSleep   = 0x01 // enter sleep: TempKey and the RNG state are lost
	WordIdle    = 0x02 // enter idle: TempKey is kept, the watchdog stops
	WordCommand = 0x03 // a command packet follows
)

// Opcodes of the commands umbra uses.
const (
	OpNonce  = 0x16
	OpRandom = 0x1B
	OpInfo   = 0x30
	OpGenKey = 0x40
	OpSign   = 0x41
)

// Modes (param1) of those commands.
const (
	GenKeyModePublic  = 0x00 // compute the public key of the private key in the slot
	GenKeyModePrivate = 0x04 // create a new private key in the slot, return its public key

	NonceModePassthrough = 0x03 // load the 32 input bytes into TempKey unchanged

	SignModeExternal = 0x80 // sign the 32-byte message held in TempKey

	InfoModeRevision = 0x00 // return the 4-byte device revision

	RandomModeSeedUpdate = 0x00 // return 32 random bytes, refreshing the RNG seed first
)

// Status codes: the single data byte of a 4-byte status response.
const (
	StatusSuccess     = 0x00
	StatusMiscompare  = 0x01 // CheckMac or Verify did not match
	StatusParseError  = 0x03 // bad opcode, mode, param or length
	StatusECCFault    = 0x05 // the ECC computation failed; retrying may work
	StatusSelfTest    = 0x07 // a self-test failed; the chip refuses crypto commands
	StatusHealthTest  = 0x08 // the RNG health test failed
	StatusExecution   = 0x0F // the command cannot run as asked (slot config, key state)
	StatusAfterWake   = 0x11 // the chip has just woken and received no command yet
	StatusWatchdog    = 0xEE // the watchdog is about to put the chip to sleep
	StatusCommCRCFail = 0xFF // the chip saw a bad CRC or another communication error
)

// Sizes in bytes.
const (
	CountSize          = 1  // the count byte that opens every packet and response
	CRCSize            = 2  // the CRC-16 that closes every packet and response
	CommandHeaderSize  = 5  // count, opcode, param1, param2 (little-endian)
	StatusResponseSize = 4  // count, status, CRC
	MaxResponseSize    = 75 // the longest response an ATECC608 sends (CryptoAuthLib's ATCA_RSP_SIZE_MAX)
	MaxCommandSize     = 155
	DigestSize         = 32 // a SHA-256 digest, as Nonce pass-through and Sign take it
	CoordSize          = 32 // one P-256 coordinate or signature half
	PublicKeySize      = 2 * CoordSize
	SignatureSize      = 2 * CoordSize // R || S
	RevisionSize       = 4
	RandomSize         = 32
	NumSlots           = 16
)

// WakeResponse is what an ATECC608 answers after a wake pulse: status 0x11 with its CRC.
var WakeResponse = [StatusResponseSize]byte{0x04, StatusAfterWake, 0x33, 0x43}

// crcPoly is the CRC-16 polynomial of every ATECC packet.
const crcPoly = 0x8005

// CRC16 is CryptoAuthLib's atCRC: polynomial 0x8005, initial value 0, input bits fed
// least-significant first, no final XOR. The result goes on the wire low byte first.
func CRC16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		for bit := byte(1); bit != 0; bit <<= 1 {
			dataBit := c&bit != 0
			crcBit := crc&0x8000 != 0
			crc <<= 1
			if dataBit != crcBit {
				crc ^= crcPoly
			}
		}
	}
	return crc
}

// AppendCRC appends the CRC of b to b, low byte first.
func AppendCRC(b []byte) []byte {
	crc := CRC16(b)
	return append(b, byte(crc), byte(crc>>8))
}

// CRCOK reports whether the last two bytes of frame are the CRC of the bytes before them.
func CRCOK(frame []byte) bool {
	if len(frame) < CRCSize {
		return false
	}
	n := len(frame) - CRCSize
	crc := CRC16(frame[:n])
	return frame[n] == byte(crc) && frame[n+1] == byte(crc>>8)
}

// Command builds a command packet (count through CRC, without the word address).
func Command(opcode, param1 byte, param2 uint16, data []byte) []byte {
	n := CommandHeaderSize + len(data) + CRCSize
	p := make([]byte, 0, n)
	p = append(p, byte(n), opcode, param1, byte(param2), byte(param2>>8))
	p = append(p, data...)
	return AppendCRC(p)
}

// Response builds a response frame (count, data, CRC) around data.
func Response(data []byte) []byte {
	n := CountSize + len(data) + CRCSize
	p := make([]byte, 0, n)
	p = append(p, byte(n))
	p = append(p, data...)
	return AppendCRC(p)
}

// Status builds a 4-byte status response.
func Status(status byte) []byte { return Response([]byte{status}) }
