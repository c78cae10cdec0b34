package lab

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// Socket is an inet socket a process holds, as /proc/PID/net lists it.
type Socket struct {
	// Proto is tcp, tcp6, udp or udp6; State, the kernel's hex state (0A: TCP LISTEN).
	Proto, State string
	// Local and Remote are /proc's HEXIP:HEXPORT; HexAddr decodes them.
	Local, Remote string
}

// String is "proto state local remote", the addresses decoded.
func (s Socket) String() string {
	return fmt.Sprintf("%s %s %s %s", s.Proto, s.State, HexAddr(s.Local), HexAddr(s.Remote))
}

// SocketsOf lists the inet sockets among process pid's file descriptors (Linux).
func SocketsOf(pid int) ([]Socket, error) {
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, fmt.Errorf("lab: file descriptors of %d: %w", pid, err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var out []Socket
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
			out = append(out, Socket{Proto: proto, State: f[3], Local: f[1], Remote: f[2]})
		}
	}
	return out, nil
}

// HexAddr decodes /proc/net's HEXIP:HEXPORT (IPv4 or IPv6, little-endian words).
func HexAddr(s string) string {
	ipHex, portHex, _ := strings.Cut(s, ":")
	port, _ := strconv.ParseUint(portHex, 16, 16)
	var ip net.IP
	for i := 0; i+8 <= len(ipHex); i += 8 {
		w, _ := strconv.ParseUint(ipHex[i:i+8], 16, 32)
		ip = append(ip, byte(w), byte(w>>8), byte(w>>16), byte(w>>24))
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
}
