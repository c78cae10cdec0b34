// Package boards describes every board umbra supports as plain data: how the kernel names
// it, which binary it runs, where its status LED, secure element and TPM are. It owns the
// table and the lookup by model string; it reads no files and touches no hardware (that is
// hal/board's and hal/led's job).
package boards

import "strings"

// Board is one supported board. Every field is data; a zero field means "this board has
// none" unless its comment says otherwise.
type Board struct {
	// ID is the short stable name scripts and `umbra-agent board` use ("rpi4b").
	ID string
	// Model is the prefix of /proc/device-tree/model that identifies the board
	// ("Raspberry Pi 4 Model B" matches "Raspberry Pi 4 Model B Rev 1.4"). Empty for the
	// generic boards, which are never matched by model, only chosen as fallbacks.
	Model string
	// GOARCH is the architecture of the agent binary to install ("arm64", "arm").
	// Empty means any: the generic fallback takes the running program's.
	GOARCH string
	// GOARM is the ARM version for GOARCH "arm" ("6", "7"); empty for arm64 and others.
	GOARM string
	// StatusLED is where the status LED is; its zero value means the board has none
	// that umbra drives.
	StatusLED StatusLED
	// I2CBus is the I2C bus an ATECC608 secure element sits on, as periph's i2creg names
	// it ("1" for /dev/i2c-1, the header's SDA/SCL on every Pi). Empty when the board has
	// no bus umbra knows of.
	I2CBus string
	// TPM is the TPM 2.0 device the tpm key store opens by default. /dev/tpmrm0 is the
	// kernel's resource manager, which appears once a TPM (on a Pi: a TPM HAT such as an
	// SLB9670 with dtoverlay=tpm-slb9670) is fitted; the resource manager, not /dev/tpm0,
	// so that several clients may share it.
	TPM string
	// Notes says what a newcomer needs to know about the board.
	Notes string
}

// StatusLED says where a board's status LED is and how it is driven.
//
// On Raspberry Pi OS the kernel's gpio-leds driver claims the ACT LED's line at boot (GPIO
// 42 on the Pi 4), so the GPIO character device refuses it and poking the SoC's registers
// through /dev/gpiomem fights the kernel's mmc0 trigger. hal/led therefore drives the LED
// through /sys/class/leds/<Sysfs> with its trigger set to "none": the agent then owns the
// LED cleanly, the kernel applies the polarity (active low on the Zero boards), and the
// same code works on the Pi 3B and Pi 5, whose LEDs are not on a GPIO bank the CPU can
// drive directly. GPIO is kept for boards, or images, where no kernel LED is declared.
type StatusLED struct {
	// Sysfs is the LED's name under /sys/class/leds ("ACT"); empty when the kernel
	// declares none.
	Sysfs string
	// GPIO is the periph (gpioreg) name of the SoC line behind the LED ("GPIO42"), used
	// only when Sysfs is empty or absent; empty when the LED is not on a line of the SoC's
	// main GPIO bank.
	GPIO string
	// ActiveLow is true when driving GPIO low lights the LED. It matters only when the
	// LED is driven through GPIO; the sysfs LED applies the polarity itself.
	ActiveLow bool
}

// String names the LED as `umbra-agent board` shows it: "sysfs:ACT", "gpio:GPIO42", or
// "" when there is none.
func (l StatusLED) String() string {
	switch {
	case l.Sysfs != "":
		return "sysfs:" + l.Sysfs
	case l.GPIO != "":
		return "gpio:" + l.GPIO
	}
	return ""
}

// Board data shared by every Raspberry Pi.
const (
	piI2CBus = "1"
	piActLED = "ACT"
	tpmRM    = "/dev/tpmrm0"
)

// The supported boards. The Pi 3B, Zero 2 W, 4B, 5 and CM4 run the arm64 agent; a 32-bit
// Raspberry Pi OS on them needs the armv7 one (bin/linux_armv7), which is noted rather than
// detected.
var (
	RPi3B = Board{
		ID: "rpi3b", Model: "Raspberry Pi 3 Model B", GOARCH: "arm64",
		// The Pi 3B's ACT LED sits behind the firmware's GPIO expander, reachable only
		// through the kernel's LED driver: there is no SoC line to name.
		StatusLED: StatusLED{Sysfs: piActLED},
		I2CBus:    piI2CBus, TPM: tpmRM,
		Notes: "BCM2837, Cortex-A53. The 3B+ reports \"Raspberry Pi 3 Model B Plus\" and is a separate entry.",
	}
	RPi3BPlus = Board{
		ID: "rpi3bplus", Model: "Raspberry Pi 3 Model B Plus", GOARCH: "arm64",
		StatusLED: StatusLED{Sysfs: piActLED, GPIO: "GPIO29"},
		I2CBus:    piI2CBus, TPM: tpmRM,
		Notes: "BCM2837B0, Cortex-A53. Listed so that the Pi 3B's model prefix does not claim it.",
	}
	RPi4B = Board{
		ID: "rpi4b", Model: "Raspberry Pi 4 Model B", GOARCH: "arm64",
		StatusLED: StatusLED{Sysfs: piActLED, GPIO: "GPIO42"},
		I2CBus:    piI2CBus, TPM: tpmRM,
		Notes: "BCM2711, Cortex-A72.",
	}
	RPi5 = Board{
		ID: "rpi5", Model: "Raspberry Pi 5", GOARCH: "arm64",
		// The Pi 5's ACT LED is on the BCM2712's always-on bank (AON GPIO 9, active low),
		// not on the main bank or the RP1's header GPIOs, so only the kernel LED reaches it.
		StatusLED: StatusLED{Sysfs: piActLED},
		I2CBus:    piI2CBus, TPM: tpmRM,
		Notes: "BCM2712, Cortex-A76; header GPIO and I2C sit behind the RP1 southbridge.",
	}
	RPiZero2W = Board{
		ID: "rpizero2w", Model: "Raspberry Pi Zero 2 W", GOARCH: "arm64",
		StatusLED: StatusLED{Sysfs: piActLED, GPIO: "GPIO29", ActiveLow: true},
		I2CBus:    piI2CBus, TPM: tpmRM,
		Notes: "RP3A0 (BCM2710A1), Cortex-A53, 512 MB: mind the agent's memory budget.",
	}
	RPiZeroW = Board{
		ID: "rpizerow", Model: "Raspberry Pi Zero W", GOARCH: "arm", GOARM: "6",
		StatusLED: StatusLED{Sysfs: piActLED, GPIO: "GPIO47", ActiveLow: true},
		I2CBus:    piI2CBus, TPM: tpmRM,
		Notes: "BCM2835, ARM1176JZF-S (ARMv6): only the armv6 agent runs; armv7 binaries die with SIGILL.",
	}
	CM4 = Board{
		ID: "cm4", Model: "Raspberry Pi Compute Module 4", GOARCH: "arm64",
		StatusLED: StatusLED{Sysfs: piActLED, GPIO: "GPIO42"},
		I2CBus:    piI2CBus, TPM: tpmRM,
		Notes: "BCM2711; the ACT LED and the I2C pins reach the carrier board through the module's connector (LED_nACT, GPIO2/3).",
	}
	GenericARM64 = Board{
		ID: "generic-arm64", GOARCH: "arm64", TPM: tpmRM,
		Notes: "Any arm64 Linux board umbra has no entry for: no LED or secure element is assumed.",
	}
	QEMUVirt = Board{
		ID: "qemu-virt", Model: "linux,dummy-virt", GOARCH: "arm64", TPM: tpmRM,
		Notes: "QEMU's virt machine (device-tree model and compatible \"linux,dummy-virt\"); a TPM appears when QEMU is given swtpm (tpm-tis-device).",
	}
	Generic = Board{
		ID: "generic", TPM: tpmRM,
		Notes: "Fallback for amd64 and any architecture without a board entry; GOARCH is the running program's.",
	}
)

// all lists every board, the model-matched ones first.
var all = []Board{RPi3B, RPi3BPlus, RPi4B, RPi5, RPiZero2W, RPiZeroW, CM4, QEMUVirt, GenericARM64, Generic}

// All returns every supported board; the caller may modify the returned slice.
func All() []Board {
	return append([]Board(nil), all...)
}

// ByModel returns the board whose Model is the longest prefix of model, as read from
// /proc/device-tree/model, and false when none is. The longest prefix wins so that "Raspberry Pi
// 3 Model B Plus Rev 1.3" is the 3B+, not the 3B.
func ByModel(model string) (Board, bool) {
	var best Board
	for _, b := range all {
		if b.Model != "" && strings.HasPrefix(model, b.Model) && len(b.Model) > len(best.Model) {
			best = b
		}
	}
	return best, best.ID != ""
}

// ByID returns the board with the given ID, and false when there is none.
func ByID(id string) (Board, bool) {
	for _, b := range all {
		if b.ID == id {
			return b, true
		}
	}
	return Board{}, false
}

// Fallback is the board assumed on a machine whose model is unknown: GenericARM64 on
// arm64, otherwise Generic with GOARCH set to goarch.
func Fallback(goarch string) Board {
	if goarch == GenericARM64.GOARCH {
		return GenericARM64
	}
	b := Generic
	b.GOARCH = goarch
	return b
}
