package boards

import "testing"

func TestByModel(t *testing.T) {
	tests := []struct {
		name   string
		model  string
		wantID string
	}{
		{"pi-3b-with-revision", "Raspberry Pi 3 Model B Rev 1.2", "rpi3b"},
		{"pi-3b-plus-is-not-the-3b", "Raspberry Pi 3 Model B Plus Rev 1.3", "rpi3bplus"},
		{"pi-4b", "Raspberry Pi 4 Model B Rev 1.5", "rpi4b"},
		{"pi-5", "Raspberry Pi 5 Model B Rev 1.0", "rpi5"},
		{"zero-2-w", "Raspberry Pi Zero 2 W Rev 1.0", "rpizero2w"},
		{"zero-w", "Raspberry Pi Zero W Rev 1.1", "rpizerow"},
		{"compute-module-4", "Raspberry Pi Compute Module 4 Rev 1.1", "cm4"},
		{"qemu-virt", "linux,dummy-virt", "qemu-virt"},
		{"unknown-board", "Pine64 RockPro64 v2.1", ""},
		{"empty-model", "", ""},
		{"model-prefix-in-the-middle-is-no-match", "Not a Raspberry Pi 4 Model B", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, ok := ByModel(tt.model)
			if b.ID != tt.wantID || ok != (tt.wantID != "") {
				t.Errorf("ByModel(%q) = %q, %v; want %q, %v", tt.model, b.ID, ok, tt.wantID, tt.wantID != "")
			}
		})
	}
}

func TestFallback(t *testing.T) {
	tests := []struct {
		name       string
		goarch     string
		wantID     string
		wantGOARCH string
	}{
		{"arm64-is-generic-arm64", "arm64", "generic-arm64", "arm64"},
		{"amd64-is-generic", "amd64", "generic", "amd64"},
		{"arm-is-generic-with-its-arch", "arm", "generic", "arm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Fallback(tt.goarch)
			if b.ID != tt.wantID || b.GOARCH != tt.wantGOARCH {
				t.Errorf("Fallback(%q) = %s/%s, want %s/%s", tt.goarch, b.ID, b.GOARCH, tt.wantID, tt.wantGOARCH)
			}
		})
	}
	if Generic.GOARCH != "" {
		t.Errorf("Fallback changed the Generic table entry: GOARCH = %q, want \"\"", Generic.GOARCH)
	}
}

// TestTable checks the invariants every entry must keep.
func TestTable(t *testing.T) {
	ids := map[string]bool{}
	models := map[string]bool{}
	for _, b := range All() {
		if b.ID == "" {
			t.Errorf("board %+v has no ID", b)
		}
		if ids[b.ID] {
			t.Errorf("ID %q appears twice", b.ID)
		}
		ids[b.ID] = true
		if b.Model != "" {
			if models[b.Model] {
				t.Errorf("model %q appears twice", b.Model)
			}
			models[b.Model] = true
			if got, _ := ByModel(b.Model); got.ID != b.ID {
				t.Errorf("ByModel(%q) = %q, want %q", b.Model, got.ID, b.ID)
			}
		}
		if got, ok := ByID(b.ID); !ok || got.ID != b.ID {
			t.Errorf("ByID(%q) = %q, %v; want found", b.ID, got.ID, ok)
		}
		if (b.GOARCH == "arm") != (b.GOARM != "") {
			t.Errorf("%s: GOARCH %q with GOARM %q; want GOARM set exactly when GOARCH is arm", b.ID, b.GOARCH, b.GOARM)
		}
		if b.StatusLED.ActiveLow && b.StatusLED.GPIO == "" {
			t.Errorf("%s: ActiveLow set without a GPIO", b.ID)
		}
	}
	for _, id := range []string{"rpi3b", "rpi4b", "rpi5", "rpizero2w", "rpizerow", "cm4", "generic-arm64", "qemu-virt", "generic"} {
		if !ids[id] {
			t.Errorf("board %q is missing from All()", id)
		}
	}
}

func TestAllReturnsACopy(t *testing.T) {
	All()[0].ID = "changed"
	if got := All()[0].ID; got == "changed" {
		t.Errorf("All()[0].ID = %q after the caller changed its copy, want the table unchanged", got)
	}
}
