package sdk

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pageBytes is the size of the page the consumer's client fetches.
const pageBytes = 1 << 20

// blobSeed is the seed of examples/dark-http-server's /blob stream.
var blobSeed = [32]byte{'u', 'm', 'b', 'r', 'a'}

// consumerPrograms are the examples a separate module builds: its path for each.
var consumerPrograms = map[string]string{
	"server": "examples/dark-http-server/main.go",
	"client": "examples/http-client/main.go",
}

// buildConsumer makes a module of its own in a temporary directory, as a user of the SDK
// would (example.com/consumer, requiring github.com/umbranet/umbra with a replace of its
// own pointing at this checkout), copies the example programs into it and builds them
// static. It returns the directory holding the binaries.
func buildConsumer(t *testing.T) string {
	t.Helper()
	checkout, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, src := range consumerPrograms {
		data, err := os.ReadFile(filepath.Join(checkout, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "main.go"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The checksums of umbra's own dependencies, so that the build needs no network;
	// the module graph is the consumer's.
	sums, err := os.ReadFile(filepath.Join(checkout, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sums, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"GOFLAGS=-mod=mod", "CGO_ENABLED=0", "GOWORK=off", "GOPROXY=off"}
	goCmd := func(args ...string) {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s in the consumer module: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	goCmd("mod", "init", "example.com/consumer")
	goCmd("mod", "edit", "-require", "github.com/umbranet/umbra@v0.0.0", "-replace", "github.com/umbranet/umbra="+checkout)
	goCmd("build", "-o", "bin/", "./...")
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(mod, []byte("module example.com/consumer")) {
		t.Fatalf("consumer go.mod:\n%s", mod)
	}
	return filepath.Join(dir, "bin")
}

// TestConsumerModuleServesAndFetchesHTTP: a module outside umbra's builds against the
// SDK with CGO_ENABLED=0; its server enrolls with a token and serves net/http through
// Listen with no listening socket, and its client enrolls and fetches a 1 MB page
// through http.Client on the SDK's dialer, byte for byte.
func TestConsumerModuleServesAndFetchesHTTP(t *testing.T) {
	bin := buildConsumer(t)
	l := startLab(t)
	l.service("web", "web", "user")
	server := start(t, filepath.Join(bin, "server"), "-identity", filepath.Join(l.dir, "web1.json"),
		"-token", l.token("web1", "web"), "-service", "web", "-routers", l.router)
	server.waitFor(t, "serving web as web1", readyTimeout)

	if fi, err := os.Stat(filepath.Join(l.dir, "web1.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the server's identity file: %v, mode %v; want it written with mode 0600", err, fi.Mode().Perm())
	}
	socks := socketsOf(t, server.cmd.Process.Pid)
	if len(socks) == 0 {
		t.Fatalf("the server holds no inet socket at all, want its router link")
	}
	t.Logf("the server's inet sockets: %v", socks)
	for _, s := range socks {
		if s.listening() {
			t.Errorf("the dark server holds a listening socket: %s", s)
		}
	}

	clientArgs := []string{"-identity", filepath.Join(l.dir, "user1.json"), "-token", l.token("user1", "user"), "-routers", l.router}
	page := filepath.Join(l.dir, "page")
	must(t, nil, filepath.Join(bin, "client"), append(clientArgs, "-out", page, fmt.Sprintf("http://web/blob?n=%d", pageBytes))...)
	got, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, pageBytes)
	io.ReadFull(rand.NewChaCha8(blobSeed), want)
	if !bytes.Equal(got, want) {
		t.Errorf("fetched %d bytes, want the server's %d byte for byte", len(got), len(want))
	}
	// The identity file is reused: no token the second time.
	hello := must(t, nil, filepath.Join(bin, "client"), "-identity", filepath.Join(l.dir, "user1.json"), "-routers", l.router, "http://web/")
	if want := "hello web@user1, this is web1\n"; hello != want {
		t.Errorf("GET / = %q, want %q: the server names the caller by its identity", hello, want)
	}
}

// socket is one inet socket a process holds, as /proc/PID/net shows it.
type socket struct {
	proto, state, local, remote string
}

func (s socket) String() string { return s.proto + " " + s.state + " " + s.local + " " + s.remote }

// listening reports a socket that takes connections or datagrams from anyone: a TCP
// socket in LISTEN, or a UDP socket not connected to one peer.
func (s socket) listening() bool {
	if strings.HasPrefix(s.proto, "tcp") {
		return s.state == tcpListen
	}
	return strings.Trim(s.remote, "0:") == ""
}

// tcpListen is the LISTEN state in /proc/net/tcp.
const tcpListen = "0A"

// socketsOf lists the inet sockets among process pid's file descriptors.
func socketsOf(t *testing.T, pid int) []socket {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("the server's file descriptors: %v", err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var out []socket
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] {
				continue
			}
			out = append(out, socket{proto: proto, state: f[3], local: f[1], remote: f[2]})
		}
	}
	return out
}
