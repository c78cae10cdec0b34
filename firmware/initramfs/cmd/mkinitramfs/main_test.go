package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) error {
	t.Helper()
	cmd := newCmd()
	cmd.SetArgs(args)
	cmd.SetOut(os.Stderr)
	return cmd.Execute()
}

func TestWritesAnImageOnlyItsOwnerReads(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"init", "agent", "token"} {
		os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644)
	}
	out := filepath.Join(dir, "initramfs.cpio")
	err := runCmd(t, "--init", filepath.Join(dir, "init"), "--agent", filepath.Join(dir, "agent"),
		"--token", filepath.Join(dir, "token"), "--module", "", "--routers", "198.18.0.1:4433", "-o", out)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Fatalf("image: %v, err %v; want a non-empty file with mode 0600 (it holds a token)", fi, err)
	}
}

func TestFailedBuildLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "initramfs.cpio")
	err := runCmd(t, "--init", filepath.Join(dir, "nosuch"), "--agent", filepath.Join(dir, "nosuch"), "--module", "", "-o", out)
	if err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("error = %v, want one naming the missing file", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a failed build left %v behind", entries)
	}
}

func TestBadAddressIsRefused(t *testing.T) {
	err := runCmd(t, "--init", "x", "--agent", "y", "--address", "10.0.2.15", "-o", filepath.Join(t.TempDir(), "i"))
	if err == nil || !strings.Contains(err.Error(), "--address") {
		t.Errorf("error = %v, want one naming --address", err)
	}
}
