package transport

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/fecconn"
	"github.com/umbranet/umbra/internal/linksim"
)

// TestRadioRebuildsLostPackets echoes 2 MB over QUIC with the Radio profile at both
// ends, through a link that loses 10 % each way: both sockets speak fecconn's prefix,
// and each end rebuilds packets the link lost before QUIC saw them missing. The LAN
// profile leaves its socket alone.
func TestRadioRebuildsLostPackets(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes bytes through a lossy link for a few seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	serverTLS, clientTLS := testTLS(t)

	listen := func() (*fecconn.Conn, *quic.Listener) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		sock, conf := Radio.Socket(pc)
		fc, ok := sock.(*fecconn.Conn)
		if !ok {
			t.Fatalf("Radio.Socket gave a %T, want a *fecconn.Conn", sock)
		}
		ln, err := (&quic.Transport{Conn: sock}).Listen(serverTLS, conf)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close(); sock.Close() })
		return fc, ln
	}
	server, ln := listen()
	go echoStreams(ctx, ln)

	radio := linksim.Impairment{Loss: 0.10, Delay: 25 * time.Millisecond, RateBitsPerSec: 20_000_000, QueuePackets: 400}
	_, proxy := linkTo(t, ctx, ln.Addr(), radio, radio)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock, conf := Radio.Socket(pc)
	client := sock.(*fecconn.Conn)
	t.Cleanup(func() { sock.Close() })
	raddr, err := net.ResolveUDPAddr("udp", proxy.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := (&quic.Transport{Conn: sock}).Dial(ctx, raddr, clientTLS, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	echoBulk(t, ctx, conn, 2<<20)

	for name, st := range map[string]fecconn.Stats{"client": client.Stats(), "server": server.Stats()} {
		t.Logf("%s: %+v", name, st)
		if st.Protected == 0 || st.Parity == 0 {
			t.Errorf("%s protected %d packets with %d parity: its peer never spoke the prefix", name, st.Protected, st.Parity)
		}
		if st.Recovered == 0 {
			t.Errorf("%s rebuilt no packet at 10 %% loss", name)
		}
	}

	lan, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lan.Close()
	if got, _ := LAN.Socket(lan); got != lan {
		t.Errorf("LAN.Socket wrapped its socket in a %T", got)
	}
}
