// Command mavlink-relay carries a MAVLink-style UDP telemetry link over umbra, datagram
// for datagram, with no port open to the network on either side.
//
// On the drone (-mode drone) it listens on loopback for the autopilot's UDP datagrams
// (-local, where the flight controller's MAVLink router sends) and carries them over a
// UDP circuit to -service (DialPacket); what comes back goes to the autopilot's last
// address. On the ground (-mode ground) it hosts -service (ListenPacket) and hands each
// circuit's datagrams to the ground station's UDP port (-local, e.g. QGroundControl's
// 127.0.0.1:14550) from a socket of that circuit's own, so each drone is a peer of its
// own to the ground station; the ground station's answers go back on the same circuit.
// Datagrams are never retransmitted: stale telemetry is worse than none.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/umbranet/umbra/agent"
)

// maxDatagram is the largest UDP payload.
const maxDatagram = 65507

// setupTimeout bounds binding or dialing the service.
const setupTimeout = time.Minute

func main() {
	var (
		mode    = flag.String("mode", "", "drone or ground (required)")
		idPath  = flag.String("identity", "id.json", "identity file (written by -token on first use)")
		token   = flag.String("token", "", "one-time enrollment token file, used when -identity does not exist yet")
		service = flag.String("service", "mavlink", "UDP service that carries the telemetry")
		local   = flag.String("local", "127.0.0.1:14550", "drone: loopback HOST:PORT to take the autopilot's datagrams on; ground: the ground station's UDP HOST:PORT")
		routers = flag.String("routers", "", "edge routers HOST:PORT, comma-separated (default: the controller's list)")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	id, err := identity(ctx, *idPath, *token)
	if err != nil {
		log.Fatal(err)
	}
	cfg := agent.Config{Identity: id, NoAutoServices: true}
	if *routers != "" {
		cfg.Routers = strings.Split(*routers, ",")
	}
	a, err := agent.New(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	switch *mode {
	case "drone":
		err = drone(ctx, a, *service, *local)
	case "ground":
		err = ground(ctx, a, *service, *local)
	default:
		err = fmt.Errorf("-mode %q: want drone or ground", *mode)
	}
	if err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}

// drone relays between the autopilot's loopback datagrams and one circuit to service,
// dialing a new circuit whenever the last one ended.
func drone(ctx context.Context, a *agent.Agent, service, local string) error {
	pc, err := net.ListenPacket("udp", local)
	if err != nil {
		return err
	}
	defer pc.Close()
	context.AfterFunc(ctx, func() { pc.Close() })
	var (
		mu        sync.Mutex
		autopilot net.Addr
		circuit   *agent.PacketConn
	)
	// open returns the circuit in use, dialing one when there is none.
	open := func() (*agent.PacketConn, error) {
		mu.Lock()
		defer mu.Unlock()
		if circuit != nil {
			return circuit, nil
		}
		dctx, cancel := context.WithTimeout(ctx, setupTimeout)
		defer cancel()
		c, err := a.DialPacket(dctx, service)
		if err != nil {
			return nil, err
		}
		circuit = c
		go func() { // the ground's datagrams to the autopilot
			buf := make([]byte, maxDatagram)
			for {
				n, err := c.Read(buf)
				if err != nil {
					mu.Lock()
					if circuit == c {
						circuit = nil
					}
					mu.Unlock()
					return
				}
				mu.Lock()
				to := autopilot
				mu.Unlock()
				if to != nil {
					pc.WriteTo(buf[:n], to)
				}
			}
		}()
		log.Printf("relaying %s to %s on %s", local, service, c.Identity())
		return c, nil
	}
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		mu.Lock()
		autopilot = from
		mu.Unlock()
		c, err := open()
		if err != nil {
			log.Printf("dial %s: %v (dropping the datagram)", service, err)
			continue
		}
		if _, err := c.Write(buf[:n]); err != nil {
			c.Close()
		}
	}
}

// ground hosts service and relays each circuit to the ground station over a UDP socket
// of its own.
func ground(ctx context.Context, a *agent.Agent, service, gcs string) error {
	lctx, cancel := context.WithTimeout(ctx, setupTimeout)
	pl, err := a.ListenPacket(lctx, service)
	cancel()
	if err != nil {
		return err
	}
	defer pl.Close()
	context.AfterFunc(ctx, func() { pl.Close() })
	log.Printf("hosting %s, relaying to %s", service, gcs)
	socks := map[string]net.Conn{} // by circuit
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := pl.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		s := socks[from.String()]
		if s == nil {
			if s, err = net.Dial("udp", gcs); err != nil {
				return err
			}
			socks[from.String()] = s
			go func() { // the ground station's answers, back on the same circuit
				back := make([]byte, maxDatagram)
				for {
					m, err := s.Read(back)
					if err != nil {
						if errors.Is(err, net.ErrClosed) {
							return
						}
						continue // nothing listens at the ground station yet
					}
					if _, err := pl.WriteTo(back[:m], from); err != nil {
						return
					}
				}
			}()
		}
		s.Write(buf[:n])
	}
}

// identity loads the identity file, enrolling with the token first if there is none.
func identity(ctx context.Context, path, tokenFile string) (*agent.Identity, error) {
	if _, err := os.Stat(path); err == nil || tokenFile == "" {
		return agent.LoadIdentity(path)
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, err
	}
	return agent.Enroll(ctx, string(token), agent.EnrollOptions{Path: path})
}
