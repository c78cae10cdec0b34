package initramfs

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/umbranet/umbra/firmware/initramfs/bootcfg"
	"github.com/umbranet/umbra/firmware/initramfs/kmod/kmodtest"
)

// member is one file of a built image, as the kernel will unpack it.
type member struct {
	mode uint32
	data string
}

// unpack reads a newc archive into a map by path.
func unpack(t *testing.T, b []byte) map[string]member {
	t.Helper()
	out := map[string]member{}
	for off := 0; ; {
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("header at %d: %v", off, err)
			}
			return int(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		off = (off + 110 + namesize + 3) &^ 3
		data := string(b[off : off+size])
		off = (off + size + 3) &^ 3
		if name == "TRAILER!!!" {
			return out
		}
		out["/"+name] = member{uint32(mode), data}
	}
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildLaysOutTheBoard(t *testing.T) {
	dir := t.TempDir()
	mods := filepath.Join(dir, "lib/modules/6.1.0-test")
	kmodtest.WriteModule(t, filepath.Join(mods, "kernel/net/core/failover.ko"), "name=failover", "depends=")
	kmodtest.WriteModule(t, filepath.Join(mods, "kernel/drivers/net/net_failover.ko"), "name=net_failover", "depends=failover")
	kmodtest.WriteModule(t, filepath.Join(mods, "kernel/drivers/net/virtio_net.ko"), "name=virtio_net", "depends=net_failover")
	cfg := bootcfg.Default()
	cfg.Routers = []string{"198.18.0.1:4433"}
	cfg.Echo = "127.0.0.1:7007"
	spec := Spec{
		Init:       writeFile(t, dir, "init", "INIT"),
		Agent:      writeFile(t, dir, "agent", "AGENT"),
		Token:      writeFile(t, dir, "token", "eyJ.token"),
		ModulesDir: mods,
		Modules:    []string{"virtio_net"},
		Config:     cfg,
	}
	var buf bytes.Buffer
	baked, err := Build(&buf, spec)
	if err != nil {
		t.Fatal(err)
	}
	img := unpack(t, buf.Bytes())

	for _, want := range []struct {
		path string
		mode uint32
		data string
	}{
		{"/init", 0o100755, "INIT"},
		{"/bin/umbra-agent", 0o100755, "AGENT"},
		{"/etc/umbra/enroll.jwt", 0o100600, "eyJ.token"},
		{"/dev/console", 0o020600, ""},
		{"/etc/umbra", 0o040700, ""},
		{"/tmp", 0o041777, ""},
	} {
		got, ok := img[want.path]
		if !ok {
			t.Errorf("%s missing from the image", want.path)
			continue
		}
		if got.mode != want.mode || got.data != want.data {
			t.Errorf("%s: mode %o data %q, want mode %o data %q", want.path, got.mode, got.data, want.mode, want.data)
		}
	}
	conf, err := bootcfg.Decode([]byte(img[bootcfg.Path].data))
	if err != nil {
		t.Fatalf("the image's %s: %v", bootcfg.Path, err)
	}
	wantMods := "/lib/modules/failover.ko /lib/modules/net_failover.ko /lib/modules/virtio_net.ko"
	if got := strings.Join(conf.Modules, " "); got != wantMods {
		t.Errorf("modules to load = %s, want %s (dependencies first)", got, wantMods)
	}
	for _, m := range conf.Modules {
		if _, ok := img[m]; !ok {
			t.Errorf("module %s to load is not in the image", m)
		}
	}
	if conf.Built.IsZero() || !conf.Built.Equal(baked.Built) {
		t.Errorf("built time = %v, want the build's time %v", conf.Built, baked.Built)
	}
	if conf.Routers[0] != "198.18.0.1:4433" || conf.Echo != "127.0.0.1:7007" {
		t.Errorf("configuration lost the routers or echo: %+v", conf)
	}
}

func TestBuildRefuses(t *testing.T) {
	dir := t.TempDir()
	good := Spec{Init: writeFile(t, dir, "init", "I"), Agent: writeFile(t, dir, "agent", "A"), Config: bootcfg.Default()}
	for _, tc := range []struct {
		name   string
		change func(s *Spec)
		want   string
	}{
		{"missing-agent", func(s *Spec) { s.Agent = filepath.Join(dir, "nosuch") }, "/bin/umbra-agent"},
		{"directory-as-init", func(s *Spec) { s.Init = dir }, "not a regular file"},
		{"modules-without-tree", func(s *Spec) { s.Modules = []string{"virtio_net"} }, "without a modules directory"},
		{"bad-config", func(s *Spec) { s.Config.Interface = "" }, "interface"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.change(&s)
			_, err := Build(&bytes.Buffer{}, s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
