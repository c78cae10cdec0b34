package firmware

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// flashScript and bundle are relative to this package's directory, where go test runs.
const (
	flashScript = "../../scripts/flash.sh"
	bundle      = "../../firmware/rpi"
)

// ELF e_machine values.
const (
	machineAArch64 = 0xb7
	machineX86_64  = 0x3e
)

// testToken is shaped like an enrollment token (header.claims.signature); flash.sh checks
// the shape, not the signature.
const testToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJkcm9uZTEifQ.c2lnbmF0dXJl\n"

// flash runs flash.sh and returns its stdout, stderr and whether it succeeded.
func flash(t *testing.T, args ...string) (stdout, stderr string, ok bool) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{flashScript}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		t.Fatalf("run flash.sh: %v", err)
	}
	return out.String(), errb.String(), err == nil
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlashWritesTheBundle(t *testing.T) {
	img := piImage(t)
	token := writeFile(t, "drone1.jwt", testToken)
	agent, agentBytes := fakeAgent(t, machineAArch64)
	if _, stderr, ok := flash(t, img, "--token", token, "--agent", agent); !ok {
		t.Fatalf("flash.sh failed: %s", stderr)
	}

	if got := bootFile(t, img, "umbra-token.jwt"); got != testToken {
		t.Errorf("boot/umbra-token.jwt: got %q, want %q", got, testToken)
	}
	conf, err := os.ReadFile(filepath.Join(bundle, "umbra.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if got := bootFile(t, img, "umbra.conf"); got != string(conf) {
		t.Errorf("boot/umbra.conf differs from firmware/rpi/umbra.conf")
	}
	if got := bootFile(t, img, "config.txt"); got != "arm_64bit=1\n" {
		t.Errorf("boot/config.txt: got %q, want it untouched", got)
	}

	if got := rootFile(t, img, "/usr/local/bin/umbra-agent"); !bytes.Equal(got, agentBytes) {
		t.Errorf("/usr/local/bin/umbra-agent: got %d bytes, want the %d of --agent", len(got), len(agentBytes))
	}
	for src, dest := range map[string]string{
		"umbra-agent.service":  "/etc/systemd/system/umbra-agent.service",
		"umbra-enroll.service": "/etc/systemd/system/umbra-enroll.service",
		"umbra-firstboot":      "/usr/local/lib/umbra/umbra-firstboot",
		"sysusers-umbra.conf":  "/etc/sysusers.d/umbra.conf",
		"99-umbra-led.rules":   "/etc/udev/rules.d/99-umbra-led.rules",
	} {
		want, err := os.ReadFile(filepath.Join(bundle, src))
		if err != nil {
			t.Fatal(err)
		}
		if got := rootFile(t, img, dest); !bytes.Equal(got, want) {
			t.Errorf("%s differs from firmware/rpi/%s", dest, src)
		}
	}
	for path, mode := range map[string]string{
		"/usr/local/bin/umbra-agent":              "0755",
		"/usr/local/lib/umbra/umbra-firstboot":    "0755",
		"/etc/systemd/system/umbra-agent.service": "0644",
	} {
		st := rootStat(t, img, path)
		if !regexp.MustCompile(`Mode:\s+`+mode+`\b`).MatchString(st) || !regexp.MustCompile(`User:\s+0\s+Group:\s+0\b`).MatchString(st) {
			t.Errorf("%s: want mode %s owned by root, stat says:\n%s", path, mode, st)
		}
	}
	for _, unit := range []string{"umbra-agent.service", "umbra-enroll.service"} {
		st := rootStat(t, img, "/etc/systemd/system/multi-user.target.wants/"+unit)
		if !strings.Contains(st, "Type: symlink") || !strings.Contains(st, "/etc/systemd/system/"+unit) {
			t.Errorf("%s is not enabled (a symlink in multi-user.target.wants); stat says:\n%s", unit, st)
		}
	}
	if st := rootStat(t, img, "/etc/systemd/system/multi-user.target.wants/ssh.service"); !strings.Contains(st, "Type: symlink") {
		t.Errorf("the image's own ssh.service link is gone")
	}
	if got := rootFile(t, img, "/etc/os-release"); !bytes.Contains(got, []byte("bookworm")) {
		t.Errorf("/etc/os-release: got %q, want it untouched", got)
	}
}

// TestFlashAgainReplacesTheToken: flashing the same image again (a re-provisioned
// device) replaces the token and the files instead of failing on them.
func TestFlashAgainReplacesTheToken(t *testing.T) {
	img := piImage(t)
	agent, _ := fakeAgent(t, machineAArch64)
	if _, stderr, ok := flash(t, img, "--token", writeFile(t, "a.jwt", testToken), "--agent", agent); !ok {
		t.Fatalf("first flash failed: %s", stderr)
	}
	second := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJkcm9uZTIifQ.b3RoZXI\n"
	if _, stderr, ok := flash(t, img, "--token", writeFile(t, "b.jwt", second), "--agent", agent); !ok {
		t.Fatalf("second flash failed: %s", stderr)
	}
	if got := bootFile(t, img, "umbra-token.jwt"); got != second {
		t.Errorf("boot/umbra-token.jwt after the second flash: got %q, want %q", got, second)
	}
}

func TestFlashDryRunChangesNothing(t *testing.T) {
	img := piImage(t)
	before := checksum(t, img)
	agent, _ := fakeAgent(t, machineAArch64)
	stdout, stderr, ok := flash(t, img, "--token", writeFile(t, "drone1.jwt", testToken), "--agent", agent, "--dry-run")
	if !ok {
		t.Fatalf("flash.sh --dry-run failed: %s", stderr)
	}
	if checksum(t, img) != before {
		t.Error("the image changed during --dry-run")
	}
	for _, want := range []string{"boot = partition 1", "root = partition 2", "umbra-token.jwt", "/usr/local/bin/umbra-agent", "nothing written"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("--dry-run output lacks %q:\n%s", want, stdout)
		}
	}
}

// partitioned returns a 32 MiB image with the sfdisk partition table given and no file
// systems.
func partitioned(t *testing.T, table string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "partitioned.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sfdisk", "-q", img)
	cmd.Stdin = strings.NewReader(table)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	return img
}

// TestFlashRefusesBadInput: each mistake gets one line on stderr that says what is
// wrong, and the image is left as it was.
func TestFlashRefusesBadInput(t *testing.T) {
	img := piImage(t)
	before := checksum(t, img)
	token := writeFile(t, "drone1.jwt", testToken)
	agent, _ := fakeAgent(t, machineAArch64)
	amd64Agent, _ := fakeAgent(t, machineX86_64)
	notImage := writeFile(t, "notes.txt", strings.Repeat("not a disk image\n", 100))
	empty := writeFile(t, "empty.img", "")
	bootOnly := partitioned(t, "label: dos\nstart=8192, size=40960, type=c\n")
	blankBoot := partitioned(t, "label: dos\nstart=8192, size=40960, type=c\nstart=49152, type=83\n")
	blankRoot := partitioned(t, "label: dos\nstart=8192, size=40960, type=c\nstart=49152, type=83\n")
	run(t, nil, "mkfs.vfat", "--offset", "8192", blankRoot, "20480")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no-token-flag", []string{img, "--agent", agent}, "no --token"},
		{"missing-token-file", []string{img, "--token", filepath.Join(t.TempDir(), "absent.jwt"), "--agent", agent}, "no such file"},
		{"token-that-is-no-jwt", []string{img, "--token", writeFile(t, "t", "hello\n"), "--agent", agent}, "not an enrollment token"},
		{"file-that-is-no-image", []string{notImage, "--token", token, "--agent", agent}, "no partition table"},
		{"empty-file", []string{empty, "--token", token, "--agent", agent}, "no partition table"},
		{"image-without-a-root-partition", []string{bootOnly, "--token", token, "--agent", agent}, "no Linux root partition"},
		{"boot-partition-without-a-file-system", []string{blankBoot, "--token", token, "--agent", agent}, "partition 1 is not a FAT file system"},
		{"root-partition-without-a-file-system", []string{blankRoot, "--token", token, "--agent", agent}, "partition 2 is not an ext4 file system"},
		{"missing-image", []string{filepath.Join(t.TempDir(), "absent.img"), "--token", token, "--agent", agent}, "no such file"},
		{"compressed-image", []string{writeFile(t, "raspios.img.xz", "\xfd7zXZ"), "--token", token, "--agent", agent}, "decompress"},
		{"agent-for-the-wrong-machine", []string{img, "--token", token, "--agent", amd64Agent}, "not an ARM binary"},
		{"missing-agent", []string{img, "--token", token, "--agent", filepath.Join(t.TempDir(), "absent")}, "make cross"},
		{"no-image", []string{"--token", token}, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, ok := flash(t, tt.args...)
			if ok {
				t.Fatal("flash.sh succeeded, want a failure")
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "flash.sh: ") || !strings.Contains(lines[0], tt.want) {
				t.Errorf("stderr: got %q, want one line starting \"flash.sh: \" that says %q", stderr, tt.want)
			}
		})
	}
	if checksum(t, img) != before {
		t.Error("a refused flash changed the image")
	}
}
