// Package bootcfg is the contract between the firmware image and its init: the
// configuration file the image builder writes and init reads at boot, and the lines init
// writes to the console for whoever watches the board (an operator on the serial port, or
// the QEMU test). It does no I/O beyond decoding and formatting.
package bootcfg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strings"
	"time"
)

// Path is where the configuration sits in the image.
const Path = "/etc/umbra/firmware.json"

// maxSize bounds the configuration file; a real one is a few hundred bytes.
const maxSize = 64 << 10

// Config is what init needs to bring the device up. Zero fields take the defaults of
// Default where noted.
type Config struct {
	// Built is when the image was made. Init never lets the clock run earlier than this,
	// so a board without a battery-backed clock does not reject certificates as not yet
	// valid. Zero means no floor.
	Built time.Time `json:"built"`
	// Modules lists kernel modules (paths in the image) to load, in order.
	Modules []string `json:"modules,omitempty"`
	// Interface is the network interface to configure, "eth0" on QEMU's virt board.
	Interface string `json:"interface"`
	// Address is the interface's IPv4 address and prefix.
	Address netip.Prefix `json:"address"`
	// Gateway is the default route's next hop.
	Gateway netip.Addr `json:"gateway"`
	// Agent is the umbra-agent binary in the image.
	Agent string `json:"agent"`
	// Token is the enrollment token in the image; enrollment runs when Identity is
	// missing.
	Token string `json:"token"`
	// Identity is where enrollment writes the identity file and the agent reads it.
	Identity string `json:"identity"`
	// StatusSocket is the agent's status socket, which init polls.
	StatusSocket string `json:"status_socket"`
	// Routers pins the edge routers (HOST:PORT) the agent uses; empty takes the
	// controller's list.
	Routers []string `json:"routers,omitempty"`
	// Hosts are the agent's --host overrides, SERVICE=PROTO:ADDR.
	Hosts []string `json:"hosts,omitempty"`
	// Echo, when set, is a loopback TCP address where init runs an echo service: a
	// service to host on a board that has no application yet, for bring-up and tests.
	Echo string `json:"echo,omitempty"`
}

// Default is the configuration for QEMU's virt board on user-mode networking, whose
// built-in DHCP server would hand out the same address.
func Default() Config {
	return Config{
		Interface:    "eth0",
		Address:      netip.MustParsePrefix("10.0.2.15/24"),
		Gateway:      netip.MustParseAddr("10.0.2.2"),
		Agent:        "/bin/umbra-agent",
		Token:        "/etc/umbra/enroll.jwt",
		Identity:     "/var/lib/umbra/identity.json",
		StatusSocket: "/run/umbra-agent.sock",
	}
}

// Decode reads a configuration and checks it. Unknown fields are an error, so a typo in
// a hand-edited file does not pass for a default.
func Decode(data []byte) (Config, error) {
	var c Config
	if len(data) > maxSize {
		return c, fmt.Errorf("bootcfg: %d bytes exceeds %d", len(data), maxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("bootcfg: %w", err)
	}
	if dec.More() {
		return Config{}, errors.New("bootcfg: data after the configuration")
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Encode writes the configuration as indented JSON after checking it.
func (c Config) Encode() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bootcfg: %w", err)
	}
	return append(b, '\n'), nil
}

// Validate checks that every field init relies on is present and well formed.
func (c Config) Validate() error {
	switch {
	case c.Interface == "" || len(c.Interface) > 15 || strings.ContainsAny(c.Interface, "/ \x00"):
		return fmt.Errorf("bootcfg: interface %q is not an interface name", c.Interface)
	case !c.Address.IsValid() || !c.Address.Addr().Is4():
		return errors.New("bootcfg: address must be an IPv4 address with a prefix length")
	case !c.Gateway.IsValid() || !c.Gateway.Is4():
		return errors.New("bootcfg: gateway must be an IPv4 address")
	}
	for name, p := range map[string]string{"agent": c.Agent, "token": c.Token, "identity": c.Identity, "status_socket": c.StatusSocket} {
		if !path.IsAbs(p) || path.Clean(p) != p {
			return fmt.Errorf("bootcfg: %s %q must be a clean absolute path", name, p)
		}
	}
	for _, m := range c.Modules {
		if !path.IsAbs(m) || !strings.HasSuffix(m, ".ko") {
			return fmt.Errorf("bootcfg: module %q must be an absolute path to a .ko file", m)
		}
	}
	for _, r := range c.Routers {
		if _, _, err := net.SplitHostPort(r); err != nil {
			return fmt.Errorf("bootcfg: router %q: want HOST:PORT", r)
		}
	}
	for _, h := range c.Hosts {
		if svc, addr, ok := strings.Cut(h, "="); !ok || svc == "" || !strings.Contains(addr, ":") {
			return fmt.Errorf("bootcfg: host %q: want SERVICE=PROTO:ADDR", h)
		}
	}
	if c.Echo != "" {
		ap, err := netip.ParseAddrPort(c.Echo)
		if err != nil || !ap.Addr().IsLoopback() {
			return fmt.Errorf("bootcfg: echo %q: want a loopback IP:PORT (the agent is the only way in)", c.Echo)
		}
	}
	return nil
}
