package sdk

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	umbralab "github.com/umbranet/umbra/internal/lab"
)

// pageBytes is the size of the page the consumer's client fetches.
const pageBytes = 1 << 20

// blobSeed is the seed of examples/dark-http-server's /blob stream.
var blobSeed = [32]byte{'u', 'm', 'b', 'r', 'a'}

// consumerPrograms are the examples a separate module builds: its path for each.
var consumerPrograms = map[string]string{
	"server": "examples/dark-http-server/main.go",
	"client": "examples/http-client/main.go",
	"relay":  "examples/mavlink-relay/main.go",
}

// consumer is the module buildConsumer made, built once for every test that runs it.
var consumer struct {
	once sync.Once
	bin  string
	err  error
}

// buildConsumer makes a module of its own in a temporary directory, as a user of the SDK
// would (example.com/consumer, requiring github.com/umbranet/umbra with a replace of its
// own pointing at this checkout), copies the example programs into it and builds them
// static. It returns the directory holding the binaries.
func buildConsumer(t *testing.T) string {
	t.Helper()
	consumer.once.Do(func() { consumer.bin, consumer.err = makeConsumer(filepath.Join(workDir, "consumer")) })
	if consumer.err != nil {
		t.Fatal(consumer.err)
	}
	return consumer.bin
}

func makeConsumer(dir string) (string, error) {
	checkout, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	for name, src := range consumerPrograms {
		data, err := os.ReadFile(filepath.Join(checkout, src))
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, name, "main.go"), data, 0o644); err != nil {
			return "", err
		}
	}
	// The checksums of umbra's own dependencies, so that the build needs no network;
	// the module graph is the consumer's.
	sums, err := os.ReadFile(filepath.Join(checkout, "go.sum"))
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sums, 0o644); err != nil {
		return "", err
	}
	env := []string{"GOFLAGS=-mod=mod", "CGO_ENABLED=0", "GOWORK=off", "GOPROXY=off"}
	for _, args := range [][]string{
		{"mod", "init", "example.com/consumer"},
		{"mod", "edit", "-require", "github.com/umbranet/umbra@v0.0.0", "-replace", "github.com/umbranet/umbra=" + checkout},
		{"build", "-o", "bin/", "./..."},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go %s in the consumer module: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return filepath.Join(dir, "bin"), nil
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
	socks := socketsOf(t, server.Pid())
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
	socks, err := umbralab.SocketsOf(pid)
	if err != nil {
		t.Fatalf("the server's file descriptors: %v", err)
	}
	var out []socket
	for _, s := range socks {
		out = append(out, socket{proto: s.Proto, state: s.State, local: s.Local, remote: s.Remote})
	}
	return out
}

// Load of the relay test.
const (
	// relayDatagrams is how many datagrams the autopilot sends once the relay carries.
	relayDatagrams = 100
	// relayEvery paces them, at a telemetry rate.
	relayEvery = 5 * time.Millisecond
)

// TestConsumerMAVLinkRelay: the MAVLink-style relay built in a module of its own carries
// an autopilot's datagrams from the drone's loopback to the ground station's UDP port and
// the ground station's answers back, datagram for datagram.
func TestConsumerMAVLinkRelay(t *testing.T) {
	bin := buildConsumer(t)
	l := startLab(t)
	l.service("mavlink", "gcs", "drone")
	gcs := udpEcho(t)
	ground := start(t, filepath.Join(bin, "relay"), "-mode", "ground", "-identity", filepath.Join(l.dir, "gcs1.json"),
		"-token", l.token("gcs1", "gcs"), "-routers", l.router, "-local", gcs)
	waitOutput(t, ground, "hosting mavlink")
	droneLocal := freeUDP(t)
	start(t, filepath.Join(bin, "relay"), "-mode", "drone", "-identity", filepath.Join(l.dir, "drone1.json"),
		"-token", l.token("drone1", "drone"), "-routers", l.router, "-local", droneLocal)

	autopilot, err := net.Dial("udp", droneLocal)
	if err != nil {
		t.Fatal(err)
	}
	defer autopilot.Close()
	buf := make([]byte, 64)
	// The relay dials on the first datagram, and drops what comes before it listens.
	deadline := time.Now().Add(readyTimeout)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("no echo through the relay within %v", readyTimeout)
		}
		autopilot.Write([]byte("ping"))
		autopilot.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := autopilot.Read(buf); err == nil && string(buf[:n]) == "ping" {
			break
		}
	}
	got := map[uint32]bool{}
	msg := make([]byte, 32) // a MAVLink v2 heartbeat's size
	for i := range relayDatagrams {
		binary.BigEndian.PutUint32(msg, uint32(i))
		autopilot.Write(msg)
		time.Sleep(relayEvery)
	}
	autopilot.SetReadDeadline(time.Now().Add(quietEnd))
	for len(got) < relayDatagrams {
		n, err := autopilot.Read(buf)
		if err != nil {
			break
		}
		if n == len(msg) {
			got[binary.BigEndian.Uint32(buf)] = true
		}
	}
	if len(got) < relayDatagrams*9/10 {
		t.Errorf("got %d of %d datagrams back through the relay, want at least 90 %%", len(got), relayDatagrams)
	}
}

// waitOutput polls p's output until it contains s.
func waitOutput(t *testing.T, p *proc, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := p.WaitContains(ctx, s); err != nil {
		t.Fatalf("%v:\n%s", err, p.output())
	}
}

// udpEcho answers every datagram on a loopback port with itself until the test ends.
func udpEcho(t *testing.T) string {
	t.Helper()
	return umbralab.UDPEchoServer(t)
}

// freeUDP returns a loopback UDP address the OS just had free.
func freeUDP(t *testing.T) string {
	t.Helper()
	return umbralab.MustFree(t, umbralab.FreeUDP)
}
