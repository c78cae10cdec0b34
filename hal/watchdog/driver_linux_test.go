package watchdog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real driver against files that are not watchdogs: the errors must say so, and a
// regular file must not be written to.
func TestOpenWhatIsNotAWatchdog(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "watchdog")
	if err := os.WriteFile(plain, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{"regular-file", plain, "not a character device"},
		{"missing-file", filepath.Join(dir, "absent"), "is the watchdog driver loaded"},
		// /dev/null is a character device that answers every ioctl with ENOTTY (ENOSYS
		// under qemu-user, which passes no watchdog ioctl through).
		{"character-device-without-watchdog-ioctls", "/dev/null", "set timeout 15s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Open(tt.path, 0)
			if err == nil {
				d.Close()
				t.Fatalf("Open(%s) succeeded, want an error", tt.path)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("Open(%s) = %q, want it to name the path and say %q", tt.path, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Open(%s) = %q, want one line", tt.path, err)
			}
		})
	}
	if b, _ := os.ReadFile(plain); string(b) != "keep" {
		t.Errorf("the regular file now holds %q, want it untouched", b)
	}
}
