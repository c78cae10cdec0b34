package peers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The OpenSSH peer: a private sshd on loopback and an `ssh -N -L` client forwarding to it.
const (
	// sshdPath must be absolute: sshd re-executes itself and refuses a relative path.
	sshdPath = "/usr/sbin/sshd"
	// privsepDir is sshd's compiled-in privilege-separation directory. Debian's service
	// unit creates it at boot; on a machine where the service never ran, sshd refuses to
	// start without it, so SSHTunnel creates it (as root, as the unit would).
	privsepDir = "/run/sshd"
	// SSHCipher is the cipher the tunnel uses. OpenSSH's own first choice is
	// chacha20-poly1305@openssh.com; aes128-gcm is pinned instead because it is the AEAD
	// umbra's TLS 1.3 and the TLS and QUIC peers negotiate, and with AES instructions it is
	// the faster of the two (nearly twice chacha20's MB/s through the tunnel on a 2-core
	// amd64), so umbra is compared with the stronger ssh -L.
	SSHCipher = "aes128-gcm@openssh.com"
	// sshStartTimeout bounds key generation and both processes' start, whatever the
	// context allows.
	sshStartTimeout = 15 * time.Second
	// sshPollInterval is how often a start-up waits for a port to accept connections.
	sshPollInterval = 20 * time.Millisecond
	// processStopTimeout is how long a process has to exit after SIGTERM before SIGKILL.
	processStopTimeout = 5 * time.Second
	// stderrKeep is how much of each process's standard error is kept for error messages.
	stderrKeep = 4 << 10
)

// ErrNoOpenSSH reports that sshd, ssh or ssh-keygen is missing.
var ErrNoOpenSSH = errors.New("peers: OpenSSH (sshd, ssh, ssh-keygen) is not installed; run scripts/setup-deps.sh as root, which installs openssh-server")

// Tunnel is a running `ssh -L` port forward through a private sshd on 127.0.0.1.
type Tunnel struct {
	addr   string
	dir    string
	sshd   *process
	ssh    *process
	closed chan struct{} // closed when Close starts; ends the context watcher
	once   sync.Once
	err    error
}

// SSHTunnel starts an sshd of its own on a free loopback port, with a fresh host key, a
// fresh client key and a configuration in a temp dir, then `ssh -N -L` forwarding a free
// local port to target (host:port as seen from sshd, here 127.0.0.1). It returns once the
// local port accepts connections. The tunnel runs until Close or until ctx ends. It needs
// OpenSSH installed (ErrNoOpenSSH otherwise) and, for sshd's privilege separation, root.
func SSHTunnel(ctx context.Context, target string) (*Tunnel, error) {
	sshPath, keygenPath, err := findOpenSSH()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "umbra-bench-ssh-")
	if err != nil {
		return nil, fmt.Errorf("peers: ssh temp dir: %w", err)
	}
	t := &Tunnel{dir: dir, closed: make(chan struct{})}
	startCtx, cancel := context.WithTimeout(ctx, sshStartTimeout)
	defer cancel()
	if err := t.start(startCtx, sshPath, keygenPath, target); err != nil {
		t.Close()
		return nil, err
	}
	go func() {
		select {
		case <-ctx.Done():
			t.Close()
		case <-t.closed:
		}
	}()
	return t, nil
}

// findOpenSSH returns the paths of ssh and ssh-keygen, having checked sshd is there too.
func findOpenSSH() (sshPath, keygenPath string, err error) {
	if _, err := os.Stat(sshdPath); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrNoOpenSSH, err)
	}
	if sshPath, err = exec.LookPath("ssh"); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrNoOpenSSH, err)
	}
	if keygenPath, err = exec.LookPath("ssh-keygen"); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrNoOpenSSH, err)
	}
	return sshPath, keygenPath, nil
}

func (t *Tunnel) start(ctx context.Context, sshPath, keygenPath, target string) error {
	hostKey := filepath.Join(t.dir, "host_ed25519")
	clientKey := filepath.Join(t.dir, "client_ed25519")
	for _, k := range []string{hostKey, clientKey} {
		out, err := exec.CommandContext(ctx, keygenPath, "-q", "-t", "ed25519", "-N", "", "-C", "umbra-bench", "-f", k).CombinedOutput()
		if err != nil {
			return fmt.Errorf("peers: ssh-keygen: %w: %s", err, out)
		}
	}
	pub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		return fmt.Errorf("peers: client key: %w", err)
	}
	authorized := filepath.Join(t.dir, "authorized_keys")
	if err := os.WriteFile(authorized, pub, 0o600); err != nil {
		return fmt.Errorf("peers: authorized_keys: %w", err)
	}
	if err := os.MkdirAll(privsepDir, 0o755); err != nil {
		return fmt.Errorf("peers: sshd privilege separation dir: %w (sshd needs root)", err)
	}
	me, err := user.Current()
	if err != nil {
		return fmt.Errorf("peers: current user: %w", err)
	}

	sshdPort, err := freePort()
	if err != nil {
		return err
	}
	config := filepath.Join(t.dir, "sshd_config")
	if err := os.WriteFile(config, []byte(SSHDConfig("127.0.0.1", sshdPort, hostKey, authorized)), 0o600); err != nil {
		return fmt.Errorf("peers: sshd_config: %w", err)
	}
	// -D stays in the foreground so that Close can stop it; -e logs to standard error.
	t.sshd, err = startProcess("sshd", sshdPath, "-D", "-e", "-f", config)
	if err != nil {
		return err
	}
	if err := waitListening(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(sshdPort)), t.sshd); err != nil {
		return err
	}

	localPort, err := freePort()
	if err != nil {
		return err
	}
	t.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(localPort))
	t.ssh, err = startProcess("ssh", sshPath,
		"-N",
		"-F", "/dev/null", // no user or system ssh_config
		"-L", fmt.Sprintf("%s:%s", t.addr, target),
		"-i", clientKey,
		"-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "ExitOnForwardFailure=yes",
		"-o", "Ciphers="+SSHCipher,
		"-o", "LogLevel=ERROR",
		"-p", strconv.Itoa(sshdPort),
		me.Username+"@127.0.0.1")
	if err != nil {
		return err
	}
	return waitListening(ctx, t.addr, t.ssh)
}

// SSHDConfig is a configuration for a private sshd on listen:port that lets one key
// forward TCP ports.
func SSHDConfig(listen string, port int, hostKey, authorizedKeys string) string {
	return fmt.Sprintf(`Port %d
ListenAddress %s
HostKey %s
PidFile none
UsePAM no
AuthorizedKeysFile %s
# The temp dir's owner and modes are not sshd's business.
StrictModes no
# The bench runs as root.
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
LogLevel ERROR
`, port, listen, hostKey, authorizedKeys)
}

// Addr is the local end of the tunnel, host:port on 127.0.0.1.
func (t *Tunnel) Addr() string { return t.addr }

// PIDs are the ssh client's and sshd's process IDs, for a CPUMeter; the meter counts the
// per-connection processes sshd forks as sshd's descendants.
func (t *Tunnel) PIDs() []int { return []int{t.ssh.cmd.Process.Pid, t.sshd.cmd.Process.Pid} }

// Close stops ssh, then sshd and the children it forked, and removes the temp dir. It
// returns the first error met; calling it again returns the same.
func (t *Tunnel) Close() error {
	t.once.Do(func() {
		close(t.closed)
		var errs []error
		if t.ssh != nil {
			errs = append(errs, t.ssh.terminate())
		}
		if t.sshd != nil {
			// sshd's per-connection children start sessions of their own, so they are
			// neither in its process group nor stopped with it: signal them by PID.
			children := descendants(t.sshd.cmd.Process.Pid)
			errs = append(errs, t.sshd.terminate())
			for _, pid := range children {
				_ = syscall.Kill(pid, syscall.SIGTERM) // may have exited already
			}
		}
		errs = append(errs, os.RemoveAll(t.dir))
		t.err = errors.Join(errs...)
	})
	return t.err
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", loopback)
	if err != nil {
		return 0, fmt.Errorf("peers: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening polls addr until it accepts a connection, p exits, or ctx ends.
func waitListening(ctx context.Context, addr string, p *process) error {
	tick := time.NewTicker(sshPollInterval)
	defer tick.Stop()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("peers: %s exited before %s listened: %v: %s", p.name, addr, p.waitErr, p.stderr.String())
		case <-ctx.Done():
			return fmt.Errorf("peers: %s did not listen on %s: %w: %s", p.name, addr, ctx.Err(), p.stderr.String())
		case <-tick.C:
		}
	}
}

// process is a started command with its exit watched.
type process struct {
	name    string
	cmd     *exec.Cmd
	stderr  *tailBuffer
	done    chan struct{} // closed once the process has exited and been waited for
	waitErr error         // set before done is closed
}

func startProcess(name, path string, args ...string) (*process, error) {
	p := &process{name: name, stderr: &tailBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.SysProcAttr = childAttr()
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("peers: start %s: %w", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// terminate sends SIGTERM, then SIGKILL after processStopTimeout, and waits for the exit.
func (p *process) terminate() error {
	select {
	case <-p.done:
		return nil // already exited, e.g. after a failed start
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM) // fails only if it just exited
	timer := time.NewTimer(processStopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("peers: %s ignored SIGTERM for %v and was killed", p.name, processStopTimeout)
}

// tailBuffer keeps the last stderrKeep bytes written to it; it is safe for concurrent use.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - stderrKeep; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
