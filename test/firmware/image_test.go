package firmware

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The test image: 64 MiB, its partitions where Raspberry Pi OS puts them (the boot
// partition at 4 MiB), but small.
const (
	sectorSize   = 512
	imageSectors = 64 << 20 / sectorSize
	bootStart    = 8192  // sectors: 4 MiB
	bootSectors  = 40960 // 20 MiB
	rootStart    = bootStart + bootSectors
	rootSectors  = imageSectors - rootStart
	bootOffset   = bootStart * sectorSize
	rootOffset   = rootStart * sectorSize
)

// tools maps the programs the tests run to the Debian package that has each.
var tools = map[string]string{
	"sfdisk":    "fdisk",
	"partx":     "util-linux",
	"mkfs.vfat": "dosfstools",
	"mcopy":     "mtools",
	"mtype":     "mtools",
	"minfo":     "mtools",
	"mkfs.ext4": "e2fsprogs",
	"debugfs":   "e2fsprogs",
}

// needTools fails the test, naming the Debian packages, when a program is missing.
func needTools(t *testing.T) {
	t.Helper()
	var missing []string
	for tool, pkg := range tools {
		if _, err := exec.LookPath(tool); err != nil && !strings.Contains(strings.Join(missing, " "), pkg) {
			missing = append(missing, pkg)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing Debian packages %s (scripts/setup-deps.sh installs them as root)", strings.Join(missing, " "))
	}
}

// run runs a program and fails the test with its output if it fails.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mtoolsEnv quiets mtools' geometry check, as flash.sh does.
var mtoolsEnv = []string{"MTOOLS_SKIP_CHECK=1"}

// piImage makes an image shaped like Raspberry Pi OS: a FAT boot partition with
// config.txt and cmdline.txt, an ext4 root with /etc/os-release and an enabled unit.
func piImage(t *testing.T) string {
	t.Helper()
	needTools(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "raspios.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(imageSectors * sectorSize); err != nil {
		t.Fatal(err)
	}
	f.Close()

	table := fmt.Sprintf("label: dos\nstart=%d, size=%d, type=c\nstart=%d, size=%d, type=83\n", bootStart, bootSectors, rootStart, rootSectors)
	cmd := exec.Command("sfdisk", "-q", img)
	cmd.Stdin = strings.NewReader(table)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	run(t, nil, "mkfs.vfat", "-n", "bootfs", "--offset", fmt.Sprint(bootStart), img, fmt.Sprint(bootSectors*sectorSize/1024))
	for name, content := range map[string]string{"config.txt": "arm_64bit=1\n", "cmdline.txt": "console=serial0,115200 root=PARTUUID=0-02 rootwait\n"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, mtoolsEnv, "mcopy", "-i", fmt.Sprintf("%s@@%d", img, bootOffset), p, "::"+name)
	}

	rootDir := filepath.Join(dir, "root")
	for _, d := range []string{"etc/systemd/system/multi-user.target.wants", "usr/local/bin", "usr/lib/systemd/system", "var/lib", "boot/firmware"} {
		if err := os.MkdirAll(filepath.Join(rootDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootDir, "etc/os-release"), []byte("PRETTY_NAME=\"Raspbian GNU/Linux 12 (bookworm)\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/lib/systemd/system/ssh.service", filepath.Join(rootDir, "etc/systemd/system/multi-user.target.wants/ssh.service")); err != nil {
		t.Fatal(err)
	}
	run(t, nil, "mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", rootDir, "-E", fmt.Sprintf("offset=%d", rootOffset), img, fmt.Sprintf("%dk", rootSectors*sectorSize/1024))
	return img
}

// bootFile reads a file of the image's boot partition.
func bootFile(t *testing.T, img, name string) string {
	t.Helper()
	return run(t, mtoolsEnv, "mtype", "-i", fmt.Sprintf("%s@@%d", img, bootOffset), "::"+name)
}

// rootFile reads a file of the image's root partition, failing if it is missing.
func rootFile(t *testing.T, img, path string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	run(t, nil, "debugfs", "-R", fmt.Sprintf("dump %s %s", path, out), rootDevice(img))
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("%s is not in the root partition: %v", path, err)
	}
	return b
}

// rootStat is debugfs's stat of a path in the root partition.
func rootStat(t *testing.T, img, path string) string {
	t.Helper()
	return run(t, nil, "debugfs", "-R", "stat "+path, rootDevice(img))
}

func rootDevice(img string) string { return fmt.Sprintf("%s?offset=%d", img, rootOffset) }

func checksum(t *testing.T, path string) [sha256.Size]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// fakeAgent writes a file that passes for an arm64 Linux binary: the ELF magic and
// e_machine 0xb7 (AArch64), then a marker that must arrive intact.
func fakeAgent(t *testing.T, machine byte) (path string, content []byte) {
	t.Helper()
	var b bytes.Buffer
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	b.Write(make([]byte, 10))
	b.Write([]byte{machine, 0})
	b.WriteString("umbra-agent test build ")
	b.Write(bytes.Repeat([]byte{0xa5}, 100<<10)) // spans many blocks
	path = filepath.Join(t.TempDir(), "umbra-agent")
	if err := os.WriteFile(path, b.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, b.Bytes()
}
