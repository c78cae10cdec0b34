package router

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRevocationListOutlivesRestart: what one router saves, the next one started on the
// same directory loads, in a file only the router can read.
func TestRevocationListOutlivesRestart(t *testing.T) {
	dir := t.TempDir()
	r := &Router{cfg: Config{DataDir: dir}, revoked: map[string]bool{"0a": true, "ff": true}}
	if err := r.saveRevoked(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, RevokedFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != revokedFileMode {
		t.Errorf("mode = %v, want %v", fi.Mode().Perm(), os.FileMode(revokedFileMode))
	}
	got, err := loadRevoked(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got["0a"] || !got["ff"] {
		t.Errorf("loaded %v, want 0a and ff", got)
	}
}

func TestLoadRevoked(t *testing.T) {
	cases := []struct {
		name    string
		content string // "" writes no file
		want    int
		wantErr bool
	}{
		{"no-file-is-an-empty-list", "", 0, false},
		{"a-saved-list-loads", `["01","02"]`, 2, false},
		{"a-corrupt-list-refuses-to-start", `["01"`, 0, true},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.content != "" {
				os.WriteFile(filepath.Join(dir, RevokedFile), []byte(tt.content), revokedFileMode)
			}
			got, err := loadRevoked(dir)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if len(got) != tt.want {
				t.Errorf("got %d serials, want %d", len(got), tt.want)
			}
		})
	}
}
