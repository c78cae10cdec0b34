package transport

import (
	"context"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/fecconn"
	"github.com/umbranet/umbra/internal/linksim"
)

// TestFECExperiment is the bench's echo in-process (a window of the round trip plus
// 250 ms at 10 Mbit/s in flight), QUIC with the Radio profile on plain sockets
// (FECEXP=plain) or on internal/fecconn (FECEXP=fec), through linksim at FECEXP_LOSS
// each way and a FECEXP_RTT ms round trip. It measures; it asserts nothing.
func TestFECExperiment(t *testing.T) {
	if os.Getenv("FECEXP") == "" {
		t.Skip()
	}
	loss, _ := strconv.ParseFloat(os.Getenv("FECEXP_LOSS"), 64)
	rttMs, _ := strconv.Atoi(os.Getenv("FECEXP_RTT"))
	useFEC := os.Getenv("FECEXP") == "fec"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	serverTLS, clientTLS := testTLS(t)
	spc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	var sconn net.PacketConn = spc
	if os.Getenv("FECEXP") == "wrap" {
		sconn = struct{ net.PacketConn }{spc}
	}
	var sf, cf *fecconn.Conn
	if useFEC {
		sf = fecconn.New(spc, fecconn.Config{})
		sconn = sf
	}
	str := &quic.Transport{Conn: sconn}
	ln, err := str.Listen(serverTLS, Radio.QUIC())
	if err != nil {
		t.Fatal(err)
	}
	go echoStreams(ctx, ln)
	radio := linksim.Impairment{Loss: loss, Delay: time.Duration(rttMs/2) * time.Millisecond, RateBitsPerSec: 10_000_000, QueuePackets: 200}
	link, proxy := linkTo(t, ctx, ln.Addr(), radio, radio)
	var dropsUp, dropsDown atomic.Int64
	link.OnDrop(func(up bool, pkt []byte) {
		if up {
			dropsUp.Add(1)
		} else {
			dropsDown.Add(1)
		}
	})
	cpc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	var cconn net.PacketConn = cpc
	if os.Getenv("FECEXP") == "wrap" {
		cconn = struct{ net.PacketConn }{cpc}
	}
	if useFEC {
		cf = fecconn.New(cpc, fecconn.Config{})
		cconn = cf
	}
	ctr := &quic.Transport{Conn: cconn}
	raddr, _ := net.ResolveUDPAddr("udp", proxy.Addr().String())
	conn, err := ctr.Dial(ctx, raddr, clientTLS, Radio.QUIC())
	if err != nil {
		t.Fatal(err)
	}
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	window := int64((time.Duration(rttMs)*time.Millisecond + 250*time.Millisecond).Seconds() * 10e6 / 8)
	var written, read atomic.Int64
	stop := time.Now().Add(14 * time.Second)
	go func() {
		buf := make([]byte, 16<<10)
		for time.Now().Before(stop) {
			if written.Load()-read.Load() > window-int64(len(buf)) {
				time.Sleep(time.Millisecond)
				continue
			}
			n, err := s.Write(buf)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	var mark int64
	markAt := time.Now().Add(4 * time.Second)
	marked := false
	s.SetReadDeadline(stop)
	for {
		n, err := s.Read(buf)
		read.Add(int64(n))
		if !marked && time.Now().After(markAt) {
			mark, marked = read.Load(), true
		}
		if err != nil {
			break
		}
	}
	t.Logf("fec=%v loss=%.2f rtt=%d: %.2f Mbit/s", useFEC, loss, rttMs, float64(read.Load()-mark)*8/10/1e6)
	t.Logf("drops up %d down %d; %+v", dropsUp.Load(), dropsDown.Load(), conn.ConnectionStats())
	if cf != nil {
		t.Logf("client %+v server %+v %v %v %+v", cf.Stats(), sf.Stats(), cf.Losses(), sf.Losses(), conn.ConnectionStats())
	}
}
