package firmware

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeEnroll stands in for `umbra-agent enroll`: it records its arguments and the token
// it was given, then writes --out, or fails when FAKE_ENROLL_FAIL is set.
const fakeEnroll = `#!/bin/sh
echo "$*" > "$UMBRA_ROOT/enroll-args"
if [ -n "${FAKE_ENROLL_FAIL:-}" ]; then
	echo "enroll: token expired" >&2
	exit 1
fi
while [ $# -gt 0 ]; do
	case $1 in
	--jwt) cp "$2" "$UMBRA_ROOT/token-seen"; shift ;;
	--out) out=$2; shift ;;
	esac
	shift
done
echo '{"name":"drone1"}' > "$out"
`

// firstboot is a device root for umbra-firstboot, with the fake enroll.
type firstboot struct {
	root, agent string
}

func newFirstboot(t *testing.T) *firstboot {
	t.Helper()
	fb := &firstboot{root: t.TempDir()}
	for _, d := range []string{"boot/firmware", "etc", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(fb.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fb.agent = filepath.Join(t.TempDir(), "umbra-agent")
	if err := os.WriteFile(fb.agent, []byte(fakeEnroll), 0o755); err != nil {
		t.Fatal(err)
	}
	return fb
}

func (fb *firstboot) path(p string) string { return filepath.Join(fb.root, p) }

func (fb *firstboot) write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(fb.path(p), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (fb *firstboot) exists(p string) bool {
	_, err := os.Stat(fb.path(p))
	return err == nil
}

// run runs the first-boot script and returns its output and whether it succeeded.
func (fb *firstboot) run(t *testing.T, env ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command("sh", filepath.Join(bundle, "umbra-firstboot"))
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "UMBRA_ROOT=" + fb.root, "UMBRA_AGENT=" + fb.agent}, env...)
	out, err := cmd.CombinedOutput()
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		t.Fatal(err)
	}
	return string(out), err == nil
}

func TestFirstbootEnrollsFromTheBootPartition(t *testing.T) {
	for _, boot := range []string{"boot/firmware", "boot"} {
		t.Run(strings.ReplaceAll(boot, "/", "-"), func(t *testing.T) {
			fb := newFirstboot(t)
			fb.write(t, boot+"/umbra-token.jwt", testToken)
			fb.write(t, boot+"/umbra.conf", "UMBRA_ENROLL_ARGS=\"--key tpm\"\nUMBRA_RUN_ARGS=--led none\n")
			if out, ok := fb.run(t); !ok {
				t.Fatalf("umbra-firstboot failed:\n%s", out)
			}
			fi, err := os.Stat(fb.path("var/lib/umbra/ID.json"))
			if err != nil {
				t.Fatalf("no identity written: %v", err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("ID.json mode: got %o, want 600", fi.Mode().Perm())
			}
			if fi, err := os.Stat(fb.path("var/lib/umbra")); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("/var/lib/umbra: got %v (%v), want mode 700", fi.Mode().Perm(), err)
			}
			args, _ := os.ReadFile(fb.path("enroll-args"))
			if want := "--out " + fb.path("var/lib/umbra/ID.json") + " --key tpm"; !strings.Contains(string(args), want) {
				t.Errorf("enroll arguments: got %q, want them to hold %q", args, want)
			}
			if seen, _ := os.ReadFile(fb.path("token-seen")); string(seen) != testToken {
				t.Errorf("token given to enroll: got %q, want %q", seen, testToken)
			}
			for _, gone := range []string{boot + "/umbra-token.jwt", boot + "/umbra.conf", "var/lib/umbra/enroll-token.jwt"} {
				if fb.exists(gone) {
					t.Errorf("%s is still there after enrolling", gone)
				}
			}
			if conf, _ := os.ReadFile(fb.path("etc/umbra/agent.conf")); !strings.Contains(string(conf), "UMBRA_RUN_ARGS=--led none") {
				t.Errorf("/etc/umbra/agent.conf: got %q, want the boot partition's umbra.conf", conf)
			}
		})
	}
}

func TestFirstbootKeepsTheTokenWhenEnrollmentFails(t *testing.T) {
	fb := newFirstboot(t)
	fb.write(t, "boot/firmware/umbra-token.jwt", testToken)
	out, ok := fb.run(t, "FAKE_ENROLL_FAIL=1")
	if ok {
		t.Fatal("umbra-firstboot succeeded though enroll failed")
	}
	if !strings.Contains(out, "token expired") || !strings.Contains(out, "stays") {
		t.Errorf("output: got %q, want enroll's error and that the token stays", out)
	}
	if !fb.exists("boot/firmware/umbra-token.jwt") {
		t.Error("the token was removed after a failed enrollment; the retry has nothing to enroll with")
	}
	for _, gone := range []string{"var/lib/umbra/ID.json", "var/lib/umbra/enroll-token.jwt"} {
		if fb.exists(gone) {
			t.Errorf("%s exists after a failed enrollment", gone)
		}
	}
}

func TestFirstbootOnAnEnrolledDeviceOnlyRemovesTheToken(t *testing.T) {
	fb := newFirstboot(t)
	if err := os.MkdirAll(fb.path("var/lib/umbra"), 0o700); err != nil {
		t.Fatal(err)
	}
	fb.write(t, "var/lib/umbra/ID.json", "{\"name\":\"old\"}\n")
	fb.write(t, "boot/firmware/umbra-token.jwt", testToken)
	if out, ok := fb.run(t); !ok {
		t.Fatalf("umbra-firstboot failed:\n%s", out)
	}
	if fb.exists("enroll-args") {
		t.Error("enroll ran on a device that has an identity")
	}
	if id, _ := os.ReadFile(fb.path("var/lib/umbra/ID.json")); string(id) != "{\"name\":\"old\"}\n" {
		t.Errorf("ID.json: got %q, want it untouched", id)
	}
	if fb.exists("boot/firmware/umbra-token.jwt") {
		t.Error("the unused token is still on the boot partition")
	}
}

func TestFirstbootWithoutATokenSaysWhereItLooked(t *testing.T) {
	fb := newFirstboot(t)
	out, ok := fb.run(t)
	if ok || !strings.Contains(out, "/boot/firmware/umbra-token.jwt") {
		t.Errorf("got success=%v, output %q; want a failure naming where the token belongs", ok, out)
	}
}
