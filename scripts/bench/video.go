package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/umbranet/umbra/internal/lab"
	"github.com/umbranet/umbra/internal/linksim"
)

// The video section (issue 22): a real RTP H.264 stream from GStreamer, sent at once
// three ways from one encoder, each through its own emulated radio with the row's loss
// and delay each way: straight to a decoder (the peer), through umbra with default
// flags, and through umbra with --udp-fec video. In umbra's two the drone's agent,
// behind the radio, dials the receiver that the ground station's agent hosts. Taps in
// the bench (one before the three ways, one before each decoder) read every RTP packet's
// sequence number, so each way's delivery and its packets' delay over the straight
// way's are measured per packet. Everything runs on loopback (linksim's UDP proxy).
const (
	// videoTimeout bounds the section: a run takes about five minutes.
	videoTimeout = 20 * time.Minute
	// videoFrames is each row's stream: 15 s at 30 fps, 640×480.
	videoFrames = 450
	// videoStraggle is how long after the encoder's last packet the decoders run on.
	videoStraggle = 3 * time.Second
	// videoSettle is how long new drone agents run before the first row, so that their
	// links' congestion controllers have measured the radio.
	videoSettle = 10 * time.Second
	// videoLossyWait bounds the wait, at a row with loss, for the drones' agents to judge
	// their link lossy: at 5 % each way a tenth of heartbeats is lost, and three of the
	// last forty (ten seconds) make the verdict.
	videoLossyWait = 30 * time.Second
	// videoSetup bounds each start-up and wait of the set-up.
	videoSetup = 60 * time.Second
	// videoStopTimeout bounds a process's exit after SIGINT.
	videoStopTimeout = 10 * time.Second
	// videoCaps are the decoders' udpsrc caps.
	videoCaps = "application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96"
)

// videoDelaysEnv, set to one-way delays (e.g. "200ms"), runs only those rows.
const videoDelaysEnv = "UMBRA_BENCH_VIDEO_DELAYS"

// videoDelays and videoLosses are the rows: every loss at each one-way delay.
var (
	videoDelays = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond}
	videoLosses = []float64{0, 0.05, 0.10, 0.15}
)

// The ways, in the order the table shows them.
const (
	videoStraight = iota
	videoUmbra
	videoFEC
	videoWays
)

var videoWayNames = [videoWays]string{"straight over the radio", "umbra, default flags", "umbra, `--udp-fec video`"}

// videoEncoder is the sender: x264 at 1.5 Mbit/s, a keyframe every 30 frames,
// RTP packets of at most 1,100 bytes; SPS and PPS go with every keyframe
// (config-interval=-1) so a decoder that lost the first can start at the next.
func videoEncoder(port int) []string {
	return []string{"-q", "videotestsrc", fmt.Sprintf("num-buffers=%d", videoFrames), "is-live=true", "!",
		"video/x-raw,width=640,height=480,framerate=30/1", "!",
		"x264enc", "tune=zerolatency", "bitrate=1500", "key-int-max=30", "!",
		"rtph264pay", "mtu=1100", "config-interval=-1", "!",
		"udpsink", "host=127.0.0.1", fmt.Sprintf("port=%d", port)}
}

// videoDecoder is the receiver, printing a line for each frame it puts out. Its
// socket takes 4 MiB (udpsrc buffer-size), the same for every way: with the system's
// 208 KiB a decoder starved of CPU by the encoder beside it (two cores) dropped bursts
// in its socket, which measured the machine, not the path.
func videoDecoder(port int) []string {
	return []string{"-v", "-e", "udpsrc", fmt.Sprintf("port=%d", port), "buffer-size=4194304", "caps=" + videoCaps, "!",
		"rtph264depay", "!", "avdec_h264", "!", "fakesink", "silent=false"}
}

// videoRow is what each way did at one loss and delay.
type videoRow struct {
	loss  float64
	delay time.Duration
	sent  int
	ways  [videoWays]videoWayResult
	// ground is the ground agent's counters over the row, both umbra ways together;
	// router, the router's drops by reason.
	ground, router string
}

type videoWayResult struct {
	counts    string // the drone agent's counters over the row
	frames    int
	delivered int
	// added is each delivered packet's delay over the straight way's, for packets that
	// arrived both ways.
	added []time.Duration
	err   error
}

// videoTap reads RTP packets on one socket, records when each sequence number first
// came, and forwards every packet to its destinations.
type videoTap struct {
	pc   *net.UDPConn
	to   []*net.UDPAddr
	mu   sync.Mutex
	seen map[uint16]time.Time
}

func newVideoTap(to ...string) (*videoTap, error) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	pc.SetReadBuffer(4 << 20)
	t := &videoTap{pc: pc, seen: map[uint16]time.Time{}}
	for _, a := range to {
		ua, err := net.ResolveUDPAddr("udp", a)
		if err != nil {
			pc.Close()
			return nil, err
		}
		t.to = append(t.to, ua)
	}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if n >= 12 && buf[0]>>6 == 2 { // RTP version 2
				seq := binary.BigEndian.Uint16(buf[2:])
				t.mu.Lock()
				if _, ok := t.seen[seq]; !ok {
					t.seen[seq] = time.Now()
				}
				t.mu.Unlock()
			}
			for _, a := range t.to {
				pc.WriteToUDP(buf[:n], a)
			}
		}
	}()
	return t, nil
}

func (t *videoTap) port() int { return t.pc.LocalAddr().(*net.UDPAddr).Port }

func (t *videoTap) addr() string { return t.pc.LocalAddr().String() }

// take returns what the tap saw and starts afresh.
func (t *videoTap) take() map[uint16]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.seen
	t.seen = map[uint16]time.Time{}
	return s
}

// videoLab is the quickstart, the radios, the agents and the taps.
type videoLab struct {
	ctx     context.Context
	dir     string
	umbra   string
	agent   string
	env     []string
	router  string
	metrics string // the quickstart's metrics URL
	qs      *exec.Cmd
	agents  []*exec.Cmd
	radios  [videoWays]*linksim.Link
	proxies [videoWays]*linksim.UDPProxy
	recv    [videoWays]*videoTap // before each decoder
	src     *videoTap            // between the encoder and the three ways, for the whole run
	decPort [videoWays]int
	listen  [videoWays]string // the drones' dial listeners (umbra's ways)
	ids     map[string]string
}

// benchVideo runs the video section.
func benchVideo(ctx context.Context, c config, r *report) error {
	for _, el := range []string{"videotestsrc", "x264enc", "rtph264pay", "rtph264depay", "avdec_h264", "udpsrc", "udpsink"} {
		if err := exec.Command("gst-inspect-1.0", "--exists", el).Run(); err != nil {
			return fmt.Errorf("video: GStreamer element %s missing (scripts/setup-deps.sh video installs it): %v", el, err)
		}
	}
	began := time.Now()
	progress := func(format string, args ...any) {
		log.Printf("video: %3.0f s: %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	l, err := newVideoLab(ctx, c)
	if err != nil {
		return err
	}
	defer l.close()
	delays := videoDelays
	if env := os.Getenv(videoDelaysEnv); env != "" {
		delays = nil
		for _, f := range strings.Split(env, ",") {
			d, err := time.ParseDuration(f)
			if err != nil {
				return fmt.Errorf("video: %s=%q: %w", videoDelaysEnv, env, err)
			}
			delays = append(delays, d)
		}
	}
	var rows []videoRow
	for _, delay := range delays {
		// The drones' agents start with the radio already at the delay: a delay that
		// jumps under a running flow reads as a queue to a congestion controller.
		for w := range videoWays {
			if err := l.radios[w].SetBoth(linksim.Impairment{Delay: delay}); err != nil {
				return err
			}
		}
		if err := l.startDrones(); err != nil {
			return fmt.Errorf("video: %w\n%s", err, l.logs())
		}
		time.Sleep(videoSettle)
		for _, loss := range videoLosses {
			for w := range videoWays {
				if err := l.radios[w].SetBoth(linksim.Impairment{Loss: loss, Delay: delay}); err != nil {
					return err
				}
			}
			if loss > 0 {
				l.waitLossy()
			}
			row, err := l.row(loss, delay)
			if err != nil {
				return fmt.Errorf("video: %w\n%s", err, l.logs())
			}
			progress("%.0f%% loss, %v each way: frames %d / %d / %d, packets %d / %d / %d of %d", 100*loss, delay,
				row.ways[0].frames, row.ways[1].frames, row.ways[2].frames,
				row.ways[0].delivered, row.ways[1].delivered, row.ways[2].delivered, row.sent)
			progress("  umbra %s; FEC %s; ground: %s; router drops: %s", row.ways[videoUmbra].counts, row.ways[videoFEC].counts, row.ground, row.router)
			rows = append(rows, row)
		}
		l.stopDrones()
	}
	writeVideo(r, rows)
	return nil
}

func newVideoLab(ctx context.Context, c config) (*videoLab, error) {
	umbra, err := filepath.Abs(filepath.Join(c.bin, "umbra"))
	if err != nil {
		return nil, err
	}
	agent, err := filepath.Abs(filepath.Join(c.bin, "umbra-agent"))
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "umbra-bench-video")
	if err != nil {
		return nil, err
	}
	l := &videoLab{ctx: ctx, dir: dir, umbra: umbra, agent: agent, env: os.Environ(), ids: map[string]string{}}
	if err := l.setup(); err != nil {
		l.close()
		return nil, fmt.Errorf("video: %w\n%s", err, l.logs())
	}
	return l, nil
}

func (l *videoLab) setup() error {
	qs := filepath.Join(l.dir, "qs")
	cmd, err := l.start("quickstart", l.umbra, "quickstart", "--dir", qs)
	if err != nil {
		return err
	}
	l.qs = cmd
	if err := lab.WaitFile(l.ctx, filepath.Join(l.dir, "quickstart.log"), "ready", 1); err != nil {
		return err
	}
	q, err := lab.ReadQuickstart(qs)
	if err != nil {
		return err
	}
	l.router, l.metrics = q.Router, q.Metrics
	l.env = append(l.env, "UMBRA_ADMIN="+q.Admin)
	// The decoders' taps, and the radios: the straight way's proxy leads to its
	// decoder's tap, umbra's to the router.
	for w := range videoWays {
		l.decPort[w] = videoPort()
		if l.recv[w], err = newVideoTap(fmt.Sprintf("127.0.0.1:%d", l.decPort[w])); err != nil {
			return err
		}
		if l.radios[w], err = linksim.NewLink(linksim.Impairment{}, linksim.Impairment{}); err != nil {
			return err
		}
		target := l.router
		if w == videoStraight {
			target = l.recv[w].addr()
		}
		if l.proxies[w], err = linksim.NewUDPProxy(l.ctx, "127.0.0.1:0", target, l.radios[w]); err != nil {
			return err
		}
		if w != videoStraight {
			l.listen[w] = fmt.Sprintf("127.0.0.1:%d", videoPort())
		}
	}
	// One sending socket for the whole run: each drone's flow, and its circuit, is set up
	// by startDrones' probes and carries every row of its delay.
	if l.src, err = newVideoTap(l.proxies[videoStraight].Addr().String(), l.listen[videoUmbra], l.listen[videoFEC]); err != nil {
		return err
	}
	for _, s := range [][]string{
		{"create", "service", "video", "--host", "udp:" + l.recv[videoUmbra].addr()},
		{"create", "service", "videofec", "--host", "udp:" + l.recv[videoFEC].addr()},
		{"create", "service-policy", "vb", "--type", "bind", "--identities", "#ground", "--services", "@video,@videofec"},
		{"create", "service-policy", "vd", "--type", "dial", "--identities", "#drone", "--services", "@video,@videofec"},
	} {
		if err := l.run(l.umbra, append([]string{"edge"}, s...)...); err != nil {
			return err
		}
	}
	for _, id := range []struct{ name, attr string }{{"ground", "ground"}, {"drone", "drone"}, {"dronefec", "drone"}} {
		jwt, out := filepath.Join(l.dir, id.name+".jwt"), filepath.Join(l.dir, id.name+".json")
		if err := l.run(l.umbra, "edge", "create", "identity", id.name, "--attr", id.attr, "--jwt-out", jwt); err != nil {
			return err
		}
		if err := l.run(l.agent, "enroll", "--jwt", jwt, "--out", out); err != nil {
			return err
		}
		l.ids[id.name] = out
	}
	ground, err := l.start("ground", l.agent, "run", "--identity", l.ids["ground"], "--routers", l.router,
		"--status-socket", filepath.Join(l.dir, "ground.sock"))
	if err != nil {
		return err
	}
	l.agents = append(l.agents, ground)
	return l.waitStatus("ground", func(st videoStatus) bool {
		return len(st.Hosting) == 2 && st.Hosting[0].State == "bound" && st.Hosting[1].State == "bound"
	})
}

// startDrones starts the two drone agents behind their radios, dialing the ground's
// receivers, and waits until a packet gets through each.
func (l *videoLab) startDrones() error {
	for _, d := range []struct {
		way  int
		name string
		args []string
	}{{videoUmbra, "drone", []string{"--dial", "video=udp:" + l.listen[videoUmbra]}},
		{videoFEC, "dronefec", []string{"--dial", "videofec=udp:" + l.listen[videoFEC], "--udp-fec", "video"}}} {
		args := append([]string{"run", "--identity", l.ids[d.name], "--routers", l.proxies[d.way].Addr().String(),
			"--status-socket", filepath.Join(l.dir, d.name+".sock")}, d.args...)
		cmd, err := l.start(d.name, l.agent, args...)
		if err != nil {
			return err
		}
		l.agents = append(l.agents, cmd)
		if err := l.waitStatus(d.name, func(st videoStatus) bool { return len(st.Links) > 0 && st.Links[0].State == "up" }); err != nil {
			return err
		}
		// A first RTP-looking packet from the sending socket sets the flow's circuit up:
		// the rows measure the video's passage, not a circuit's set-up.
		dst, err := net.ResolveUDPAddr("udp", l.listen[d.way])
		if err != nil {
			return err
		}
		probe := make([]byte, 12)
		probe[0] = 2 << 6
		deadline := time.Now().Add(videoSetup)
		for len(l.recv[d.way].take()) == 0 {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: no packet through its circuit within %v", d.name, videoSetup)
			}
			l.src.pc.WriteToUDP(probe, dst)
			time.Sleep(100 * time.Millisecond) // a probe's trip
		}
	}
	return nil
}

// waitLossy waits, up to videoLossyWait, until both drones' agents judge their link
// lossy (their UDP circuits add AutoFEC): a drone's radio is bad for minutes, not for
// the first seconds of a row.
func (l *videoLab) waitLossy() {
	deadline := time.Now().Add(videoLossyWait)
	for _, name := range []string{"drone", "dronefec"} {
		for time.Now().Before(deadline) {
			st := l.status(name)
			if len(st.Links) > 0 && st.Links[0].Lossy {
				break
			}
			time.Sleep(250 * time.Millisecond) // poll
		}
	}
}

// stopDrones stops the drone agents (the ground's stays).
func (l *videoLab) stopDrones() {
	for _, a := range l.agents[1:] {
		lab.StopCmd(a, os.Interrupt, videoStopTimeout)
	}
	l.agents = l.agents[:1]
}

// row streams the video once, three ways, and measures each.
func (l *videoLab) row(loss float64, delay time.Duration) (row videoRow, err error) {
	row = videoRow{loss: loss, delay: delay}
	names := [videoWays]string{videoUmbra: "drone", videoFEC: "dronefec"}
	var drones [videoWays]videoStatus
	ground := l.status("ground")
	routerBefore := l.routerDrops()
	for w := videoUmbra; w < videoWays; w++ {
		drones[w] = l.status(names[w])
	}
	defer func() {
		g := l.status("ground")
		for w := videoUmbra; w < videoWays; w++ {
			row.ways[w].counts = "drone: " + agentDelta(drones[w], l.status(names[w]))
		}
		row.ground = agentDelta(ground, g)
		var parts []string
		for reason, n := range l.routerDrops() {
			if d := n - routerBefore[reason]; d > 0 {
				parts = append(parts, fmt.Sprintf("%s %.0f", reason, d))
			}
		}
		sort.Strings(parts)
		row.router = strings.Join(parts, ", ")
		if row.router == "" {
			row.router = "none"
		}
	}()
	for w := range videoWays {
		l.recv[w].take()
	}
	var decs [videoWays]*exec.Cmd
	var outs [videoWays]*frameCounter
	for w := range videoWays {
		cmd := exec.CommandContext(l.ctx, "gst-launch-1.0", videoDecoder(l.decPort[w])...)
		fc := &frameCounter{}
		cmd.Stdout, cmd.Stderr = fc, io.Discard
		if err := cmd.Start(); err != nil {
			return row, fmt.Errorf("decoder: %w", err)
		}
		decs[w], outs[w] = cmd, fc
	}
	defer func() {
		for _, d := range decs {
			lab.StopCmd(d, os.Interrupt, videoStopTimeout)
		}
	}()
	time.Sleep(time.Second) // the decoders' sockets open (gst-launch prints nothing when they do)
	src := l.src
	src.take()
	enc := exec.CommandContext(l.ctx, "gst-launch-1.0", videoEncoder(src.port())...)
	if out, err := enc.CombinedOutput(); err != nil {
		return row, fmt.Errorf("encoder: %w: %s", err, out)
	}
	time.Sleep(videoStraggle + 2*delay)
	for w, d := range decs {
		lab.StopCmd(d, os.Interrupt, videoStopTimeout)
		row.ways[w].frames = outs[w].frames()
	}
	sent := src.take()
	row.sent = len(sent)
	var got [videoWays]map[uint16]time.Time
	for w := range videoWays {
		got[w] = l.recv[w].take()
		for seq := range got[w] {
			if _, ok := sent[seq]; ok {
				row.ways[w].delivered++
			}
		}
	}
	for w := videoUmbra; w < videoWays; w++ {
		for seq, at := range got[w] {
			s, ok1 := sent[seq]
			st, ok2 := got[videoStraight][seq]
			if ok1 && ok2 {
				row.ways[w].added = append(row.ways[w].added, at.Sub(s)-st.Sub(s))
			}
		}
	}
	return row, nil
}

// frameCounter counts the frames a decoder put out: fakesink's chain lines.
type frameCounter struct {
	mu   sync.Mutex
	n    int
	tail []byte
}

func (f *frameCounter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data := append(f.tail, p...)
	i := strings.LastIndexByte(string(data), '\n')
	if i < 0 {
		f.tail = data
		return len(p), nil
	}
	sc := bufio.NewScanner(strings.NewReader(string(data[:i+1])))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "last-message = chain") {
			f.n++
		}
	}
	f.tail = append([]byte(nil), data[i+1:]...)
	return len(p), nil
}

func (f *frameCounter) frames() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// videoStatus is the part of `umbra-agent status -o json` the section reads.
type videoStatus struct {
	LinksUp uint64 `json:"links_up"`
	Stalls  uint64 `json:"stalls"`
	Links   []struct {
		State string `json:"state"`
		Lossy bool   `json:"lossy"`
	} `json:"links"`
	Datagrams struct {
		Sent         uint64            `json:"sent"`
		Delivered    uint64            `json:"delivered"`
		RecoveredFEC uint64            `json:"recovered_fec"`
		Held         uint64            `json:"held"`
		Late         uint64            `json:"late"`
		Dropped      map[string]uint64 `json:"dropped"`
	} `json:"datagrams"`
	Hosting []struct {
		State string `json:"state"`
	} `json:"hosting"`
}

// routerDrops reads the router's umbra_router_datagrams_dropped_total by reason.
func (l *videoLab) routerDrops() map[string]float64 {
	out := map[string]float64{}
	if l.metrics == "" {
		return out
	}
	resp, err := http.Get(l.metrics)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, `umbra_router_datagrams_dropped_total{reason="`)
		if !ok {
			continue
		}
		reason, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		var v float64
		fmt.Sscanf(value, "%g", &v)
		out[reason] = v
	}
	return out
}

// status reads agent name's status; the zero value if it cannot.
func (l *videoLab) status(name string) videoStatus {
	var st videoStatus
	out, err := exec.CommandContext(l.ctx, l.agent, "status", "--status-socket", filepath.Join(l.dir, name+".sock"), "-o", "json").Output()
	if err == nil {
		json.Unmarshal(out, &st)
	}
	return st
}

// agentDelta is what an agent counted during a row: drops by reason (those not zero),
// datagrams FEC rebuilt, held and late, and links that came up.
func agentDelta(before, after videoStatus) string {
	var parts []string
	for reason, n := range after.Datagrams.Dropped {
		if d := n - before.Datagrams.Dropped[reason]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", reason, d))
		}
	}
	sort.Strings(parts)
	if d := after.Datagrams.RecoveredFEC - before.Datagrams.RecoveredFEC; d > 0 {
		parts = append(parts, fmt.Sprintf("recovered %d", d))
	}
	if d := after.Datagrams.Held - before.Datagrams.Held; d > 0 {
		parts = append(parts, fmt.Sprintf("held %d", d))
	}
	if d := after.Datagrams.Late - before.Datagrams.Late; d > 0 {
		parts = append(parts, fmt.Sprintf("late %d", d))
	}
	if d := after.LinksUp - before.LinksUp; d > 0 {
		parts = append(parts, fmt.Sprintf("links up %d", d))
	}
	if d := after.Stalls - before.Stalls; d > 0 {
		parts = append(parts, fmt.Sprintf("stalls %d", d))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func (l *videoLab) waitStatus(name string, ok func(videoStatus) bool) error {
	deadline := time.Now().Add(videoSetup)
	for time.Now().Before(deadline) && l.ctx.Err() == nil {
		out, err := exec.CommandContext(l.ctx, l.agent, "status", "--status-socket", filepath.Join(l.dir, name+".sock"), "-o", "json").Output()
		var st videoStatus
		if err == nil && json.Unmarshal(out, &st) == nil && ok(st) {
			return nil
		}
		time.Sleep(200 * time.Millisecond) // poll
	}
	return fmt.Errorf("%s: not ready within %v", name, videoSetup)
}

// runner starts the lab's programs, each killed if this process dies, and runs its
// setup commands within videoSetup.
func (l *videoLab) runner() lab.Runner {
	return lab.Runner{Ctx: l.ctx, Dir: l.dir, Env: l.env, Timeout: videoSetup, Prepare: func(cmd *exec.Cmd) {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}}
}

func (l *videoLab) start(name, bin string, args ...string) (*exec.Cmd, error) {
	return l.runner().Start(name, bin, args...)
}

func (l *videoLab) run(bin string, args ...string) error { return l.runner().Run(bin, args...) }

func (l *videoLab) logs() string { return l.runner().Logs(4 << 10) }

func (l *videoLab) close() {
	for i := len(l.agents) - 1; i >= 0; i-- {
		lab.StopCmd(l.agents[i], os.Interrupt, videoStopTimeout)
	}
	if l.qs != nil {
		lab.StopCmd(l.qs, os.Interrupt, videoStopTimeout)
	}
	if l.src != nil {
		l.src.pc.Close()
	}
	for w := range videoWays {
		if l.proxies[w] != nil {
			l.proxies[w].Close()
		}
		if l.recv[w] != nil {
			l.recv[w].pc.Close()
		}
	}
	os.RemoveAll(l.dir)
}

// videoPort returns a UDP port free on loopback now.
func videoPort() int {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

var errVideoTarget = errors.New("video: target missed")

// writeVideo writes the section's table.
func writeVideo(r *report, rows []videoRow) {
	r.printf("## Drone video through umbra (issue 22)\n\n")
	r.printf("A real RTP H.264 stream (GStreamer: `videotestsrc` 640×480 at 30 fps, %d frames, `x264enc tune=zerolatency bitrate=1500 key-int-max=30`, `rtph264pay mtu=1100 config-interval=-1`), sent from one encoder three ways at once from one socket, each through its own emulated radio (linksim's UDP proxy) with the row's random loss and delay each way, to its own decoder (`udpsrc buffer-size=4194304 ! rtph264depay ! avdec_h264 ! fakesink`): straight, and through umbra from a drone agent behind the radio dialing a receiver the ground station's agent hosts, with default flags and with `--udp-fec video`. Frames: what each decoder put out. Packets: RTP packets that reached the decoder's socket. Added delay: each packet's delay over the same packet's straight over the radio, p50 / p95.\n\n", videoFrames)
	r.printf("| loss, delay each way | frames: straight / umbra / umbra FEC | packets: straight / umbra / umbra FEC (of sent) | added delay umbra p50 / p95 | added delay umbra FEC p50 / p95 |\n|---|---|---|---|---|\n")
	for _, row := range rows {
		pct := func(n int) string { return fmt.Sprintf("%d (%.1f %%)", n, 100*float64(n)/float64(max(1, row.sent))) }
		lat := func(w int) string {
			a := row.ways[w].added
			if len(a) == 0 {
				return "—"
			}
			return fmt.Sprintf("%s / %s", ms(percentile(a, 0.5)), ms(percentile(a, 0.95)))
		}
		r.printf("| %.0f %%, %d ms | %d / %d / %d | %s / %s / %s of %d | %s | %s |\n", 100*row.loss, row.delay.Milliseconds(),
			row.ways[0].frames, row.ways[1].frames, row.ways[2].frames,
			pct(row.ways[0].delivered), pct(row.ways[1].delivered), pct(row.ways[2].delivered), row.sent, lat(videoUmbra), lat(videoFEC))
	}
	r.printf("\nWhat umbra counted over each row (`umbra-agent status` datagrams, the router's drops by reason): the drones' agents, which send, and the ground's, which receives both ways' video.\n\n")
	r.printf("| loss, delay each way | drone, default flags | drone, `--udp-fec video` | ground | router drops |\n|---|---|---|---|---|\n")
	for _, row := range rows {
		r.printf("| %.0f %%, %d ms | %s | %s | %s | %s |\n", 100*row.loss, row.delay.Milliseconds(),
			strings.TrimPrefix(row.ways[videoUmbra].counts, "drone: "), strings.TrimPrefix(row.ways[videoFEC].counts, "drone: "), row.ground, row.router)
	}
	r.printf("\n")
	var missed []string
	for _, row := range rows {
		if row.ways[videoUmbra].frames < row.ways[videoStraight].frames {
			missed = append(missed, fmt.Sprintf("default flags below the straight path at %.0f %%, %d ms (%d < %d frames)", 100*row.loss, row.delay.Milliseconds(), row.ways[videoUmbra].frames, row.ways[videoStraight].frames))
		}
		if row.loss == 0.10 && float64(row.ways[videoFEC].delivered) < 0.99*float64(row.sent) {
			missed = append(missed, fmt.Sprintf("FEC delivered %.1f %% of packets at 10 %%, %d ms, under 99 %%", 100*float64(row.ways[videoFEC].delivered)/float64(max(1, row.sent)), row.delay.Milliseconds()))
		}
	}
	if len(missed) == 0 {
		r.printf("Targets: umbra with default flags at or above the straight path in every row; with FEC at least 99 %% of packets at 10 %% loss: met.\n\n")
	} else {
		r.printf("Targets missed (%v): %s.\n\n", errVideoTarget, strings.Join(missed, "; "))
	}
}
