// Package atecc608sim is an emulated ATECC608 secure element behind periph's i2c.Bus, so
// tests drive the real atecc608 driver over the real wire protocol: wake pulse, word
// addresses, command packets with CRC, busy NACKs and status responses. It keeps real
// P-256 keys per slot and signs with crypto/ecdsa. Faults (an absent chip, damaged
// responses, slow execution, a sleeping chip) are set through Config and methods. It is
// a test lab, not a model of the chip's configuration or lock zones.
package atecc608sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/physic"

	"github.com/umbranet/umbra/hal/keystore/atecc608/internal/wire"
)

// DefaultAddr is the 7-bit address the chip answers on when Config.Addr is zero.
const DefaultAddr = 0x60

// DefaultKeySlots are the slots configured for P-256 private keys when Config.KeySlots is nil.
var DefaultKeySlots = []int{0, 1, 2, 3, 4}

// DefaultRevision is what Info returns when Config.Revision is zero.
var DefaultRevision = [wire.RevisionSize]byte{0x00, 0x00, 0x60, 0x03}

// generalCall is the I2C address the driver writes to for the wake pulse.
const generalCall = 0x00

// ErrNACK is what Tx returns when nothing acknowledges the address: the chip is absent,
// asleep, idle, busy, or the transfer is addressed elsewhere.
var ErrNACK = errors.New("atecc608sim: address not acknowledged")

// Config describes the emulated chip. The zero value is a factory-address chip with key
// slots 0–4 that answers at once.
type Config struct {
	// Addr is the chip's 7-bit I2C address. Zero means DefaultAddr.
	Addr uint16
	// KeySlots lists the slots configured for P-256 private keys; GenKey and Sign on any
	// other slot answer an execution error. Nil means DefaultKeySlots.
	KeySlots []int
	// Revision is what Info mode 0 returns. Zero means DefaultRevision.
	Revision [wire.RevisionSize]byte
	// ExecTime is how long the chip stays busy, NACKing every transfer, after each
	// command. Zero means the response is ready at once.
	ExecTime time.Duration
	// Absent makes every transfer fail with ErrNACK, like an empty socket.
	Absent bool
}

// Stats counts what the chip has seen, for tests to assert on.
type Stats struct {
	Wakes              int // wake pulses that woke the chip
	Commands           int // command packets received, good CRC or not
	BadCommandCRCs     int // command packets answered with status 0xFF
	CorruptedResponses int // responses sent with a damaged CRC on purpose
	BusyNACKs          int // transfers NACKed because a command was still running
}

type power int

const (
	asleep power = iota
	idle
	awake
)

// Chip is the emulated ATECC608. It implements i2c.Bus and is safe for concurrent use.
type Chip struct {
	mu        sync.Mutex
	cfg       Config
	keySlot   [wire.NumSlots]bool
	keys      [wire.NumSlots]*ecdsa.PrivateKey
	state     power
	out       []byte // the I/O buffer the host reads
	outPos    int
	tempKey   [wire.DigestSize]byte
	tempValid bool
	busyUntil time.Time
	corrupt   int
	stats     Stats
}

// New returns a sleeping chip as cfg describes.
func New(cfg Config) *Chip {
	if cfg.Addr == 0 {
		cfg.Addr = DefaultAddr
	}
	if cfg.KeySlots == nil {
		cfg.KeySlots = DefaultKeySlots
	}
	if cfg.Revision == [wire.RevisionSize]byte{} {
		cfg.Revision = DefaultRevision
	}
	c := &Chip{cfg: cfg}
	for _, s := range cfg.KeySlots {
		if s >= 0 && s < wire.NumSlots {
			c.keySlot[s] = true
		}
	}
	return c
}

// String names the bus, as periph's buses do.
func (c *Chip) String() string { return "atecc608sim" }

// SetSpeed accepts any speed; the emulation has no clock.
func (c *Chip) SetSpeed(physic.Frequency) error { return nil }

// SetAbsent makes the chip vanish from the bus (true) or come back (false).
func (c *Chip) SetAbsent(absent bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg.Absent = absent
}

// SetExecTime changes how long each later command keeps the chip busy.
func (c *Chip) SetExecTime(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg.ExecTime = d
}

// CorruptResponses damages the CRC of the next n command responses (wake responses are
// left alone).
func (c *Chip) CorruptResponses(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corrupt = n
}

// Sleep puts the chip to sleep as its watchdog or a power cycle would; TempKey is lost.
func (c *Chip) Sleep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleep()
}

// Stats returns the counters so far.
func (c *Chip) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Tx is one I2C transaction: the write w (if any), then the read into r (if any).
func (c *Chip) Tx(addr uint16, w, r []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg.Absent {
		return fmt.Errorf("%w at %#x", ErrNACK, addr)
	}
	if addr == generalCall {
		// Addressing 0x00 holds SDA low long enough to be a wake pulse. A sleeping or
		// idle chip wakes and queues 0x11; an awake one ignores it. Nothing ACKs 0x00.
		if c.state != awake {
			c.state = awake
			c.setOut(wire.WakeResponse[:])
			c.stats.Wakes++
		}
		return fmt.Errorf("%w at %#x", ErrNACK, addr)
	}
	if addr != c.cfg.Addr || c.state != awake {
		return fmt.Errorf("%w at %#x", ErrNACK, addr)
	}
	if time.Now().Before(c.busyUntil) {
		c.stats.BusyNACKs++
		return fmt.Errorf("%w at %#x (busy)", ErrNACK, addr)
	}
	if len(w) > 0 {
		c.write(w)
	}
	if len(r) > 0 {
		c.read(r)
	}
	return nil
}

func (c *Chip) sleep() {
	c.state = asleep
	c.tempValid = false
	c.out = nil
}

func (c *Chip) setOut(b []byte) {
	c.out = append(c.out[:0], b...)
	c.outPos = 0
}

// read copies the I/O buffer from the read pointer; past its end the chip sends 0xFF.
func (c *Chip) read(r []byte) {
	for i := range r {
		if c.outPos < len(c.out) {
			r[i] = c.out[c.outPos]
			c.outPos++
		} else {
			r[i] = 0xFF
		}
	}
}

func (c *Chip) write(w []byte) {
	switch w[0] {
	case wire.WordReset:
		c.outPos = 0
	case wire.WordSleep:
		c.sleep()
	case wire.WordIdle:
		c.state = idle // TempKey survives idle
	case wire.WordCommand:
		resp := c.command(w[1:])
		if c.corrupt > 0 {
			c.corrupt--
			c.stats.CorruptedResponses++
			resp[len(resp)-1] ^= 0xFF
		}
		c.setOut(resp)
		c.busyUntil = time.Now().Add(c.cfg.ExecTime)
	}
}

// command runs one packet (count through CRC) and returns the response frame.
func (c *Chip) command(pkt []byte) []byte {
	c.stats.Commands++
	if len(pkt) < wire.CommandHeaderSize+wire.CRCSize || int(pkt[0]) != len(pkt) || !wire.CRCOK(pkt) {
		c.stats.BadCommandCRCs++
		return wire.Status(wire.StatusCommCRCFail)
	}
	opcode, mode := pkt[1], pkt[2]
	param2 := int(pkt[3]) | int(pkt[4])<<8
	data := pkt[wire.CommandHeaderSize : len(pkt)-wire.CRCSize]

	switch opcode {
	case wire.OpInfo:
		if mode != wire.InfoModeRevision {
			return wire.Status(wire.StatusParseError)
		}
		return wire.Response(c.cfg.Revision[:])
	case wire.OpRandom:
		var b [wire.RandomSize]byte
		rand.Read(b[:])
		return wire.Response(b[:])
	case wire.OpNonce:
		if mode != wire.NonceModePassthrough || param2 != 0 || len(data) != wire.DigestSize {
			return wire.Status(wire.StatusParseError)
		}
		copy(c.tempKey[:], data)
		c.tempValid = true
		return wire.Status(wire.StatusSuccess)
	case wire.OpGenKey:
		return c.genKey(mode, param2, data)
	case wire.OpSign:
		return c.sign(mode, param2, data)
	default:
		return wire.Status(wire.StatusParseError)
	}
}

func (c *Chip) genKey(mode byte, slot int, data []byte) []byte {
	if slot >= wire.NumSlots || len(data) != 0 {
		return wire.Status(wire.StatusParseError)
	}
	switch mode {
	case wire.GenKeyModePrivate:
		if !c.keySlot[slot] {
			return wire.Status(wire.StatusExecution)
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return wire.Status(wire.StatusECCFault)
		}
		c.keys[slot] = k
	case wire.GenKeyModePublic:
		if !c.keySlot[slot] || c.keys[slot] == nil {
			return wire.Status(wire.StatusExecution)
		}
	default:
		return wire.Status(wire.StatusParseError)
	}
	point, err := c.keys[slot].PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		return wire.Status(wire.StatusECCFault)
	}
	return wire.Response(point[1:])
}

func (c *Chip) sign(mode byte, slot int, data []byte) []byte {
	if mode != wire.SignModeExternal || slot >= wire.NumSlots || len(data) != 0 {
		return wire.Status(wire.StatusParseError)
	}
	if !c.keySlot[slot] || c.keys[slot] == nil || !c.tempValid {
		return wire.Status(wire.StatusExecution)
	}
	// Sign consumes TempKey: the next signature needs a fresh Nonce.
	c.tempValid = false
	r, s, err := ecdsa.Sign(rand.Reader, c.keys[slot], c.tempKey[:])
	if err != nil {
		return wire.Status(wire.StatusECCFault)
	}
	var rs [wire.SignatureSize]byte
	r.FillBytes(rs[:wire.CoordSize])
	s.FillBytes(rs[wire.CoordSize:])
	return wire.Response(rs[:])
}
