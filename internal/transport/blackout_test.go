package transport

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/linksim"
)

// TestRadioProbesThroughABlackout blacks out a Radio connection's link while a stream
// waits for its echo. quic-go doubles its probe timeout at each unanswered probe: from a
// clean link's 30 ms it probes twice in the last four seconds of an 8 s blackout, and
// after the link returns the stream waits for the next probe, up to seconds away (a relay
// drone's router link took 2.5 s after 10 s in the bench, and the next probe after 30 s
// can be 30 s away). third_party/quic-go's Config.MaxProbeTimeout (umbra-trunc-pto.patch),
// a second in the Radio profile, keeps it probing every second, so the echo comes within
// about a second of the return.
func TestRadioProbesThroughABlackout(t *testing.T) {
	if testing.Short() {
		t.Skip("an 8 s blackout")
	}
	const (
		blackout = 8 * time.Second
		// window is the blackout's tail in which the probes are counted: quic-go's own
		// doubling fires at most once in it (two packets), the Radio profile's every second.
		window    = 4 * time.Second
		minProbes = 6
		// maxRecovery is generous: the echo comes within about RadioMaxProbeTimeout.
		maxRecovery = 3 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	serverTLS, clientTLS := testTLS(t)
	ln := listenRadio(t, ctx, serverTLS, echoStreams)
	link, proxy, conn := dialOverLink(t, ctx, ln, clientTLS, linksim.Impairment{}, linksim.Impairment{})
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 64)
	echo := func() error {
		if _, err := s.Write(msg); err != nil {
			return err
		}
		_, err := io.ReadFull(s, msg)
		return err
	}
	for range 20 { // settle on the clean link: a round trip of about a millisecond
		if err := echo(); err != nil {
			t.Fatal(err)
		}
	}

	link.SetBlackout(true)
	began := time.Now()
	done := make(chan error, 1)
	go func() { done <- echo() }() // its packets are lost: only probes can bring it through
	time.Sleep(blackout - window)  // the blackout's length is the test's subject
	before := proxy.Stats().Up.PacketsIn
	time.Sleep(time.Until(began.Add(blackout)))
	probes := proxy.Stats().Up.PacketsIn - before
	link.SetBlackout(false)
	back := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(readTimeout):
		t.Fatalf("no echo within %v of the link's return", readTimeout)
	}
	took := time.Since(back)
	t.Logf("%d packets offered in the last %v of a %v blackout; the echo came %v after the return",
		probes, window, blackout, took.Round(time.Millisecond))
	if probes < minProbes {
		t.Errorf("%d packets offered in the last %v of the blackout, want at least %d: QUIC's probe timeout backed off past %v (MaxProbeTimeout lost?)",
			probes, window, minProbes, RadioMaxProbeTimeout)
	}
	if took > maxRecovery {
		t.Errorf("the echo came %v after the link returned, want within %v (about %v)", took.Round(time.Millisecond), maxRecovery, RadioMaxProbeTimeout)
	}
}

// readTimeout bounds the wait for the echo after the link returns: far past any bound
// the test checks, so that a failure reports the time it took.
const readTimeout = 30 * time.Second
