package kmod

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/umbranet/umbra/firmware/initramfs/kmod/kmodtest"
)

// fakeTree lays out the virtio network modules as Debian's cloud kernel has them.
func fakeTree(t *testing.T) string {
	dir := t.TempDir()
	k := filepath.Join(dir, "kernel")
	kmodtest.WriteModule(t, filepath.Join(k, "drivers/virtio/virtio_ring.ko"), "name=virtio_ring", "depends=", "vermagic=6.1.0 SMP mod_unload aarch64")
	kmodtest.WriteModule(t, filepath.Join(k, "drivers/virtio/virtio.ko"), "name=virtio", "depends=virtio_ring")
	kmodtest.WriteModule(t, filepath.Join(k, "net/core/failover.ko"), "name=failover", "depends=")
	kmodtest.WriteModule(t, filepath.Join(k, "drivers/net/net_failover.ko"), "name=net_failover", "depends=failover")
	kmodtest.WriteModule(t, filepath.Join(k, "drivers/net/virtio_net.ko"), "license=GPL", "depends=net_failover,virtio_ring,virtio", "name=virtio_net")
	kmodtest.WriteModule(t, filepath.Join(k, "drivers/char/hw_random/virtio-rng.ko"), "depends=virtio,virtio_ring")
	kmodtest.WriteModule(t, filepath.Join(k, "drivers/net/needs_missing.ko"), "name=needs_missing", "depends=nowhere")
	kmodtest.WriteModule(t, filepath.Join(k, "drivers/net/loop_a.ko"), "name=loop_a", "depends=loop_b")
	kmodtest.WriteModule(t, filepath.Join(k, "drivers/net/loop_b.ko"), "name=loop_b", "depends=loop_a")
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/rtc/rtc-pl031.ko\nkernel/drivers/tty/serial/amba-pl011.ko\n"), 0o644)
	return dir
}

func names(mods []Module) []string {
	var out []string
	for _, m := range mods {
		out = append(out, m.Name)
	}
	return out
}

func TestResolve(t *testing.T) {
	tree, err := Open(fakeTree(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		want  []string
		asked []string
	}{
		{"dependencies-load-first", []string{"failover", "net_failover", "virtio_ring", "virtio", "virtio_net"}, []string{"virtio_net"}},
		{"each-module-once", []string{"failover", "net_failover", "virtio_ring", "virtio", "virtio_net", "virtio_rng"}, []string{"virtio_net", "virtio_rng", "virtio"}},
		{"dashed-file-name-is-an-underscored-module", []string{"virtio_ring", "virtio", "virtio_rng"}, []string{"virtio-rng"}},
		{"built-in-needs-nothing", nil, []string{"rtc_pl031", "amba_pl011"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tree.Resolve(tc.asked...)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(names(got), tc.want) {
				t.Errorf("Resolve(%v) = %v, want %v", tc.asked, names(got), tc.want)
			}
		})
	}
}

func TestResolveErrorsNameTheModule(t *testing.T) {
	tree, err := Open(fakeTree(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, asked, want string }{
		{"unknown-module", "no_such_driver", "no_such_driver is neither a module"},
		{"missing-dependency", "needs_missing", "nowhere (needed by needs_missing)"},
		{"cycle", "loop_a", "dependency cycle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tree.Resolve(tc.asked)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Resolve(%s) error = %v, want one containing %q", tc.asked, err, tc.want)
			}
		})
	}
}

func TestOpenRefusesATreeWithoutModules(t *testing.T) {
	if _, err := Open(t.TempDir()); err == nil {
		t.Fatal("Open of an empty directory succeeded, want an error")
	}
}

func TestParseModinfo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    Modinfo
		wantErr bool
	}{
		{"fields-with-padding", "name=virtio_net\x00\x00\x00depends=a,b-c\x00vermagic=6.1\x00", Modinfo{Name: "virtio_net", Depends: []string{"a", "b_c"}, Vermagic: "6.1"}, false},
		{"empty-depends", "depends=\x00name=x\x00", Modinfo{Name: "x"}, false},
		{"field-without-equals", "name=x\x00garbage\x00", Modinfo{}, true},
		{"dependency-with-a-path", "depends=../../etc/passwd\x00", Modinfo{}, true},
		{"empty-dependency", "depends=a,,b\x00", Modinfo{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseModinfo([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	many := "depends=" + strings.Repeat("m,", maxDepends) + "m\x00"
	if _, err := ParseModinfo([]byte(many)); err == nil {
		t.Errorf("%d dependencies accepted, want refused above %d", maxDepends+1, maxDepends)
	}
}

// TestDebianKernel resolves the QEMU image's modules in the real kernel that `make
// qemu-test` unpacks, when it is there.
func TestDebianKernel(t *testing.T) {
	dir := os.Getenv("UMBRA_QEMU_KERNEL")
	if dir == "" {
		t.Skip("UMBRA_QEMU_KERNEL is not set (scripts/qemu-system-test.sh sets it)")
	}
	tree, err := Open(filepath.Join(dir, "modules"))
	if err != nil {
		t.Fatal(err)
	}
	mods, err := tree.Resolve("virtio_pci", "virtio_net")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(names(mods), " ")
	if !strings.HasSuffix(got, "virtio_net") || !strings.Contains(got, "virtio_pci") || !strings.Contains(got, "net_failover") {
		t.Errorf("modules for the QEMU image = %s, want virtio_pci, net_failover and virtio_net last", got)
	}
}

func FuzzParseModinfo(f *testing.F) {
	f.Add([]byte("name=virtio_net\x00depends=net_failover,virtio_ring\x00vermagic=6.1.0-56-cloud-arm64 SMP mod_unload modversions aarch64\x00"))
	f.Add([]byte("\x00\x00depends=\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := ParseModinfo(data)
		if err != nil {
			return
		}
		if len(info.Depends) > maxDepends {
			t.Fatalf("%d dependencies accepted", len(info.Depends))
		}
		for _, d := range info.Depends {
			if d == "" || strings.ContainsAny(d, "/ -") {
				t.Fatalf("dependency %q accepted", d)
			}
		}
	})
}
