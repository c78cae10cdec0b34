package atecc608

import (
	"errors"
	"fmt"

	"github.com/umbranet/umbra/hal/keystore/atecc608/internal/wire"
)

// Errors the driver returns, wrapped with the operation and slot; test them with errors.Is.
var (
	// ErrNoDevice means nothing answered at the address: no chip, wrong bus or address,
	// or a wake pulse too short for the bus speed.
	ErrNoDevice = errors.New("atecc608: no device")
	// ErrWake means a device answered the wake pulse with something other than 0x11.
	ErrWake = errors.New("atecc608: unexpected wake response")
	// ErrClosed is returned by a Device or Key used after Close.
	ErrClosed = errors.New("atecc608: closed")
	// ErrSlot is returned for a slot outside 0–15 before anything is sent to the chip.
	ErrSlot = errors.New("atecc608: slot out of range")
	// ErrHash is returned by Key.Sign for any hash but SHA-256, the only one the chip signs.
	ErrHash = errors.New("atecc608: only SHA-256 digests can be signed")
	// ErrDigestSize is returned by Key.Sign for a digest that is not 32 bytes long.
	ErrDigestSize = errors.New("atecc608: digest size")
	// ErrCRC means responses kept failing their CRC after every retry.
	ErrCRC = errors.New("atecc608: response CRC mismatch")
	// ErrResponse means a response had an impossible length or the wrong size of data.
	ErrResponse = errors.New("atecc608: malformed response")
	// ErrTimeout means the chip kept NACKing past the command's execution budget.
	ErrTimeout = errors.New("atecc608: no response within the execution time")
	// ErrBus is an I2C transfer failure after the chip had answered the wake pulse.
	ErrBus = errors.New("atecc608: i2c transfer failed")
)

// Errors for the chip's status codes.
var (
	// ErrMiscompare is status 0x01: a CheckMac or Verify did not match.
	ErrMiscompare = errors.New("atecc608: miscompare")
	// ErrParse is status 0x03: the chip rejected the opcode, mode, parameter or length.
	ErrParse = errors.New("atecc608: parse error")
	// ErrECCFault is status 0x05: the ECC computation failed inside the chip.
	ErrECCFault = errors.New("atecc608: ECC fault")
	// ErrSelfTest is status 0x07: a self-test failed and the chip refuses crypto commands.
	ErrSelfTest = errors.New("atecc608: self-test failed")
	// ErrHealthTest is status 0x08: the random number generator failed its health test.
	ErrHealthTest = errors.New("atecc608: RNG health test failed")
	// ErrExecution is status 0x0F: the command cannot run as asked, most often because
	// the slot is not configured for P-256 private keys or holds no key yet.
	ErrExecution = errors.New("atecc608: execution error")
	// ErrAfterWake is status 0x11 where a command's answer was expected.
	ErrAfterWake = errors.New("atecc608: chip reports a fresh wake instead of a result")
	// ErrWatchdog is status 0xEE: the watchdog was about to put the chip to sleep.
	ErrWatchdog = errors.New("atecc608: watchdog about to expire")
	// ErrComm is status 0xFF: the chip saw a bad CRC or another error in our command.
	ErrComm = errors.New("atecc608: chip saw a communication error")
	// ErrStatus is a status code this driver does not know.
	ErrStatus = errors.New("atecc608: unknown status")
)

// statusErr maps a status byte of a 4-byte response to its error.
func statusErr(status byte) error {
	switch status {
	case wire.StatusSuccess:
		return nil
	case wire.StatusMiscompare:
		return ErrMiscompare
	case wire.StatusParseError:
		return ErrParse
	case wire.StatusECCFault:
		return ErrECCFault
	case wire.StatusSelfTest:
		return ErrSelfTest
	case wire.StatusHealthTest:
		return ErrHealthTest
	case wire.StatusExecution:
		return ErrExecution
	case wire.StatusAfterWake:
		return ErrAfterWake
	case wire.StatusWatchdog:
		return ErrWatchdog
	case wire.StatusCommCRCFail:
		return ErrComm
	default:
		return fmt.Errorf("%w 0x%02x", ErrStatus, status)
	}
}

// retryable reports whether a fresh wake and a resend may succeed where err failed: the
// bytes were damaged on the wire or the chip was interrupted, not refused.
func retryable(err error) bool {
	for _, e := range []error{ErrCRC, ErrResponse, ErrComm, ErrWatchdog, ErrAfterWake, ErrBus, ErrECCFault} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
