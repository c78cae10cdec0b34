package atecc608

import (
	"context"
	"fmt"
	"time"

	"github.com/umbranet/umbra/hal/keystore/atecc608/internal/wire"
)

// Timing. Execution times are CryptoAuthLib's for an ATECC608 at ChipMode clock divider
// M0 (device_execution_time_608_m0); the driver polls instead of sleeping them out.
const (
	// wakeDelay is tWHI: after the wake pulse the chip needs this long before it answers.
	wakeDelay = 1500 * time.Microsecond
	// pollInterval is the pause between reads while the chip NACKs because it is busy.
	pollInterval = time.Millisecond

	execInfo   = 5 * time.Millisecond
	execNonce  = 20 * time.Millisecond
	execRandom = 23 * time.Millisecond
	execGenKey = 115 * time.Millisecond
	execSign   = 115 * time.Millisecond
	// execBudgetFactor stretches those times into the deadline of a poll: parts set to the
	// slower clock dividers (M1, M2) take longer, and a healthy chip ends the poll early.
	execBudgetFactor = 4
)

// Retries.
const (
	// wakeAttempts is how many wake pulses are tried before the chip is declared absent.
	wakeAttempts = 2
	// maxAttempts is how many times one operation is run (wake, commands, idle) when its
	// bytes are damaged on the wire or the chip is interrupted.
	maxAttempts = 3
)

// execBudget is how long to poll for the answer to opcode.
func execBudget(opcode byte) time.Duration {
	t := execGenKey // the slowest command used here, for an opcode missing below
	switch opcode {
	case wire.OpInfo:
		t = execInfo
	case wire.OpNonce:
		t = execNonce
	case wire.OpRandom:
		t = execRandom
	case wire.OpGenKey:
		t = execGenKey
	case wire.OpSign:
		t = execSign
	}
	return execBudgetFactor * t
}

// wake sends the wake pulse and checks the chip's answer. The caller holds d.mu.
func (d *Device) wake() error {
	var err error
	for range wakeAttempts {
		// The wake pulse is SDA held low for at least tWLO (60 µs). Addressing 0x00 does
		// that at 100 kHz (the address byte is nine low bit times); nothing ACKs address
		// 0, so the error is expected. On a 400 kHz bus the pulse is too short and the
		// chip sleeps on: run the secure element's bus at 100 kHz.
		_ = d.wakeDev.Tx([]byte{0x00}, nil)
		time.Sleep(wakeDelay)

		var r [wire.StatusResponseSize]byte
		if txErr := d.dev.Tx(nil, r[:]); txErr != nil {
			err = fmt.Errorf("%w at %#x on bus %s: %w", ErrNoDevice, d.dev.Addr, d.busName, txErr)
			continue
		}
		switch {
		case r == wire.WakeResponse:
			return nil
		case r[0] == wire.StatusResponseSize && r[1] == wire.StatusSelfTest:
			return fmt.Errorf("%w (reported on wake)", ErrSelfTest)
		default:
			// An awake chip ignores the wake pulse and the read returns what its output
			// buffer held; idle puts it down so the next pulse wakes it fresh.
			err = fmt.Errorf("%w: % x, want % x", ErrWake, r, wire.WakeResponse)
			_ = d.dev.Tx([]byte{wire.WordIdle}, nil)
		}
	}
	return err
}

// idle puts the chip in idle mode, keeping TempKey and stopping the watchdog. A chip that
// misses it falls asleep by its watchdog (about 1.3 s), and wake handles either state.
func (d *Device) idle() { _ = d.dev.Tx([]byte{wire.WordIdle}, nil) }

// sleep puts the chip to sleep, its lowest-power state; TempKey is lost.
func (d *Device) sleep() error { return d.dev.Tx([]byte{wire.WordSleep}, nil) }

// execute sends one command and polls for its response, returning the response data.
// The caller holds d.mu and has woken the chip.
func (d *Device) execute(ctx context.Context, opcode, param1 byte, param2 uint16, data []byte) ([]byte, error) {
	pkt := append([]byte{wire.WordCommand}, wire.Command(opcode, param1, param2, data)...)
	if err := d.dev.Tx(pkt, nil); err != nil {
		return nil, fmt.Errorf("%w: send opcode 0x%02x: %w", ErrBus, opcode, err)
	}

	// The chip NACKs its address until the command has run. Read the count byte first,
	// then the rest, as CryptoAuthLib does.
	deadline := time.Now().Add(execBudget(opcode))
	var count [wire.CountSize]byte
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := d.dev.Tx(nil, count[:])
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: opcode 0x%02x after %v: %w", ErrTimeout, opcode, execBudget(opcode), err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	n := int(count[0])
	if n < wire.StatusResponseSize || n > wire.MaxResponseSize {
		return nil, fmt.Errorf("%w: count %d, want %d..%d", ErrResponse, n, wire.StatusResponseSize, wire.MaxResponseSize)
	}
	buf := make([]byte, n)
	buf[0] = count[0]
	if err := d.dev.Tx(nil, buf[wire.CountSize:]); err != nil {
		return nil, fmt.Errorf("%w: read response: %w", ErrBus, err)
	}
	return parseResponse(buf)
}

// session runs op between a wake and an idle, holding the bus, and runs it again from a
// fresh wake while it fails in a retryable way, at most maxAttempts times in all.
func (d *Device) session(ctx context.Context, what string, op func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("%w: %s", ErrClosed, what)
	}
	var err error
	attempts := 0
	for attempts < maxAttempts {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("atecc608: %s: %w", what, ctxErr)
		}
		attempts++
		if err = d.wake(); err != nil {
			return fmt.Errorf("%w (%s)", err, what)
		}
		err = op()
		d.idle()
		if err == nil || !retryable(err) {
			break
		}
	}
	switch {
	case err == nil:
		return nil
	case retryable(err):
		return fmt.Errorf("%w: %s, gave up after %d attempts", err, what, attempts)
	default:
		return fmt.Errorf("%w: %s", err, what)
	}
}
