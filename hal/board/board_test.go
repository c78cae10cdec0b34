package board

import (
	"strings"
	"testing"
	"testing/fstest"
)

// deviceTree builds a fake root whose /proc/device-tree holds model and serial as the
// kernel writes them: NUL-terminated. An empty value leaves the file out.
func deviceTree(model, serial string) fstest.MapFS {
	fsys := fstest.MapFS{}
	if model != "" {
		fsys[modelPath] = &fstest.MapFile{Data: []byte(model + "\x00")}
	}
	if serial != "" {
		fsys[serialPath] = &fstest.MapFile{Data: []byte(serial + "\x00")}
	}
	return fsys
}

// Captured from real boards (serials made up).
const (
	pi3CPUInfo = `processor	: 0
BogoMIPS	: 38.40
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41

Hardware	: BCM2835
Revision	: a02082
Serial		: 00000000c0ffee01
Model		: Raspberry Pi 3 Model B Rev 1.2
`
	amd64CPUInfo = `processor	: 0
vendor_id	: GenuineIntel
model		: 85
model name	: Intel(R) Xeon(R) CPU
`
	zeroSerialCPUInfo = `Serial		: 0000000000000000
Model		: Raspberry Pi 4 Model B Rev 1.4
`
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name       string
		root       fstest.MapFS
		goarch     string
		wantBoard  string
		wantModel  string
		wantSerial string
		wantGOARCH string
	}{
		{"pi-3b", deviceTree("Raspberry Pi 3 Model B Rev 1.2", "00000000c0ffee01"), "arm64",
			"rpi3b", "Raspberry Pi 3 Model B Rev 1.2", "00000000c0ffee01", "arm64"},
		{"pi-3b-plus", deviceTree("Raspberry Pi 3 Model B Plus Rev 1.3", "00000000c0ffee02"), "arm64",
			"rpi3bplus", "Raspberry Pi 3 Model B Plus Rev 1.3", "00000000c0ffee02", "arm64"},
		{"pi-4b", deviceTree("Raspberry Pi 4 Model B Rev 1.4", "10000000c0ffee03"), "arm64",
			"rpi4b", "Raspberry Pi 4 Model B Rev 1.4", "10000000c0ffee03", "arm64"},
		{"pi-5", deviceTree("Raspberry Pi 5 Model B Rev 1.0", "c0ffee04c0ffee04"), "arm64",
			"rpi5", "Raspberry Pi 5 Model B Rev 1.0", "c0ffee04c0ffee04", "arm64"},
		{"zero-2-w", deviceTree("Raspberry Pi Zero 2 W Rev 1.0", "00000000c0ffee05"), "arm64",
			"rpizero2w", "Raspberry Pi Zero 2 W Rev 1.0", "00000000c0ffee05", "arm64"},
		{"zero-w-on-a-32-bit-kernel", deviceTree("Raspberry Pi Zero W Rev 1.1", "00000000c0ffee06"), "arm",
			"rpizerow", "Raspberry Pi Zero W Rev 1.1", "00000000c0ffee06", "arm"},
		{"compute-module-4", deviceTree("Raspberry Pi Compute Module 4 Rev 1.0", "10000000c0ffee07"), "arm64",
			"cm4", "Raspberry Pi Compute Module 4 Rev 1.0", "10000000c0ffee07", "arm64"},
		{"qemu-virt-has-no-serial", deviceTree("linux,dummy-virt", ""), "arm64",
			"qemu-virt", "linux,dummy-virt", "", "arm64"},
		{"unknown-arm64-board-is-generic-arm64", deviceTree("Pine64 RockPro64 v2.1", ""), "arm64",
			"generic-arm64", "Pine64 RockPro64 v2.1", "", "arm64"},
		{"no-device-tree-on-amd64-is-generic",
			fstest.MapFS{cpuinfo: {Data: []byte(amd64CPUInfo)}}, "amd64",
			"generic", "", "", "amd64"},
		{"nothing-at-all-on-arm-is-generic-with-its-arch", fstest.MapFS{}, "arm",
			"generic", "", "", "arm"},
		{"cpuinfo-model-and-serial-stand-in-for-a-missing-device-tree",
			fstest.MapFS{cpuinfo: {Data: []byte(pi3CPUInfo)}}, "arm",
			"rpi3b", "Raspberry Pi 3 Model B Rev 1.2", "00000000c0ffee01", "arm64"},
		{"cpuinfo-serial-fills-a-missing-serial-number",
			func() fstest.MapFS {
				fsys := deviceTree("Raspberry Pi 3 Model B Rev 1.2", "")
				fsys[cpuinfo] = &fstest.MapFile{Data: []byte(pi3CPUInfo)}
				return fsys
			}(), "arm64",
			"rpi3b", "Raspberry Pi 3 Model B Rev 1.2", "00000000c0ffee01", "arm64"},
		{"device-tree-wins-over-cpuinfo",
			func() fstest.MapFS {
				fsys := deviceTree("Raspberry Pi 4 Model B Rev 1.4", "10000000c0ffee03")
				fsys[cpuinfo] = &fstest.MapFile{Data: []byte(pi3CPUInfo)}
				return fsys
			}(), "arm64",
			"rpi4b", "Raspberry Pi 4 Model B Rev 1.4", "10000000c0ffee03", "arm64"},
		{"all-zero-cpuinfo-serial-is-no-serial",
			fstest.MapFS{cpuinfo: {Data: []byte(zeroSerialCPUInfo)}}, "arm64",
			"rpi4b", "Raspberry Pi 4 Model B Rev 1.4", "", "arm64"},
		{"every-trailing-nul-and-newline-is-trimmed",
			fstest.MapFS{
				modelPath:  {Data: []byte("Raspberry Pi 5 Model B Rev 1.0\x00\x00")},
				serialPath: {Data: []byte("c0ffee04c0ffee04\n\x00")},
			}, "arm64",
			"rpi5", "Raspberry Pi 5 Model B Rev 1.0", "c0ffee04c0ffee04", "arm64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Detect(Config{Root: tt.root, GOARCH: tt.goarch})
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			if got.Board.ID != tt.wantBoard {
				t.Errorf("board = %q, want %q", got.Board.ID, tt.wantBoard)
			}
			if got.Model != tt.wantModel {
				t.Errorf("model = %q, want %q", got.Model, tt.wantModel)
			}
			if got.Serial != tt.wantSerial {
				t.Errorf("serial = %q, want %q", got.Serial, tt.wantSerial)
			}
			if got.Board.GOARCH != tt.wantGOARCH {
				t.Errorf("goarch = %q, want %q", got.Board.GOARCH, tt.wantGOARCH)
			}
		})
	}
}

func TestDetectUnreadableModelIsAnError(t *testing.T) {
	// A directory where the model file should be: reading it fails, but not with
	// "does not exist", so Detect must report it rather than guess.
	root := fstest.MapFS{modelPath + "/oops": {Data: []byte("x")}}
	_, err := Detect(Config{Root: root, GOARCH: "arm64"})
	if err == nil || !strings.Contains(err.Error(), "board:") {
		t.Errorf("Detect = %v, want a board: error", err)
	}
}

// TestDetectThisMachine runs detection on the real /proc: whatever it finds, it must not
// fail, and a machine without a known model gets the fallback for its architecture.
func TestDetectThisMachine(t *testing.T) {
	got, err := Detect(Config{})
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	if got.Board.ID == "" {
		t.Errorf("board ID is empty, want a board or the fallback")
	}
}
