package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/umbranet/umbra/internal/lab"
)

// Sizes of the UDP runs.
const (
	udpRateDatagrams = 20000
	udpRateWindow    = 64 // datagrams sent ahead of their echoes
	udpPingRounds    = 1000
	udpPayload       = 64 // a MAVLink-sized message
	udpWait          = 2 * time.Second
)

// udpEchoServer echoes datagrams on loopback until ctx ends.
func udpEchoServer(ctx context.Context) (string, error) {
	pc, err := lab.UDPEcho()
	if err != nil {
		return "", err
	}
	context.AfterFunc(ctx, func() { pc.Close() })
	return pc.LocalAddr().String(), nil
}

// udpResult is what one UDP path delivered.
type udpResult struct {
	rate      float64 // echoed datagrams per second
	delivered float64 // fraction echoed
	p50, p99  time.Duration
}

// measureUDP sends datagrams through addr (whose far end echoes) with a bounded window,
// then times ping-pong round trips.
func measureUDP(addr string) (udpResult, error) {
	var r udpResult
	c, err := net.Dial("udp", addr)
	if err != nil {
		return r, err
	}
	defer c.Close()
	buf := make([]byte, 2048)
	// Wait until the path answers (a circuit is set up by the first datagram).
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.Write([]byte("probe"))
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(buf); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return r, errors.New("no echo through " + addr)
		}
	}
	msg := make([]byte, udpPayload)
	got := 0
	t0 := time.Now()
	sent := 0
	for sent < udpRateDatagrams {
		for sent < udpRateDatagrams && sent-got < udpRateWindow {
			binary.BigEndian.PutUint32(msg, uint32(sent))
			c.Write(msg)
			sent++
		}
		c.SetReadDeadline(time.Now().Add(udpWait))
		if n, err := c.Read(buf); err != nil {
			got = sent // a lost datagram must not stall the window
		} else if n == udpPayload {
			got++
		}
	}
	// Drain what is still in flight.
	echoed := got
	for {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(buf); err != nil {
			break
		}
		echoed++
	}
	elapsed := time.Since(t0)
	r.rate = float64(udpRateDatagrams) / elapsed.Seconds()
	r.delivered = min(1, float64(echoed)/udpRateDatagrams)

	var rtts []time.Duration
	for i := range udpPingRounds {
		binary.BigEndian.PutUint32(msg, uint32(i)|1<<31)
		t := time.Now()
		c.Write(msg)
		c.SetReadDeadline(time.Now().Add(udpWait))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			if n == udpPayload && binary.BigEndian.Uint32(buf) == uint32(i)|1<<31 {
				rtts = append(rtts, time.Since(t))
				break
			}
		}
	}
	if len(rtts) == 0 {
		return r, fmt.Errorf("no ping-pong answered through %s", addr)
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	r.p50, r.p99 = rtts[len(rtts)/2], rtts[len(rtts)*99/100]
	return r, nil
}
