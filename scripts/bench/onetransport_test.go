package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestOneTransportTable: the issue-17 table reads each cell's QUIC figure against the best
// peer (not CUBIC) and the relay against QUIC.
func TestOneTransportTable(t *testing.T) {
	res := syntheticRadio()
	res.paths = []radioPath{radioPathUmbra: {name: "umbra"}, radioPathSSH: {name: "ssh"}, radioPathTLS: {name: "tls"},
		radioPathQUIC: {name: "quic"}, radioPathTLSCubic: {name: "cubic"}, radioPathRelay: {name: "relay"}}
	res.matrix = []matrixCell{{loss: 0.10, rtt: 200 * time.Millisecond,
		// umbra, ssh, tls, raw quic, cubic, relay (bytes per second)
		rates: []float64{900e3, 420e3, 380e3, 30e3, 990e3, 810e3}, errs: make([]error, 6)}}
	var r report
	writeOneTransport(&r, res)
	out := r.String()
	row := ""
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "| 10 %, 200ms |") {
			row = line
		}
	}
	if row == "" {
		t.Fatalf("no row for 10 %%, 200 ms in:\n%s", out)
	}
	for _, want := range []string{fmtRatio(900.0 / 420), fmtRatio(810.0 / 900), "(ssh)"} {
		if !strings.Contains(row, want) {
			t.Errorf("row %q lacks %q", row, want)
		}
	}
}

func TestRadioPathsNarrowTheMatrix(t *testing.T) {
	for _, tc := range []struct {
		names   string
		want    map[int]bool
		wantErr bool
	}{
		{names: "", want: nil},
		{names: "umbra", want: map[int]bool{radioPathUmbra: true}},
		{names: "umbra, relay", want: map[int]bool{radioPathUmbra: true, radioPathRelay: true}},
		{names: "umbra,warp", wantErr: true},
		{names: "lane", wantErr: true},
	} {
		var p radioPlan
		err := p.narrowPaths(tc.names)
		if (err != nil) != tc.wantErr {
			t.Errorf("narrowPaths(%q) error %v, want error %v", tc.names, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && fmt.Sprint(p.onlyPaths) != fmt.Sprint(tc.want) {
			t.Errorf("narrowPaths(%q) = %v, want %v", tc.names, p.onlyPaths, tc.want)
		}
	}
}

func TestRadioSkipNarrowsThePlan(t *testing.T) {
	for _, tc := range []struct {
		name, matrix, skip string
		cells, blackouts   int
	}{
		{name: "default-plan", cells: 6 * 3, blackouts: 4},
		{name: "skip-matrix-runs-no-cell", skip: "matrix,udp,profiles", cells: 0, blackouts: 4},
		{name: "an-empty-matrix-runs-no-cell", matrix: ";", cells: 0, blackouts: 4},
		{name: "one-cell", matrix: "0.1;200ms", skip: "blackouts", cells: 1, blackouts: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := defaultRadioPlan()
			if err := p.narrow(tc.matrix, tc.skip); err != nil {
				t.Fatal(err)
			}
			if got := len(p.losses) * len(p.rtts); got != tc.cells {
				t.Errorf("cells = %d, want %d", got, tc.cells)
			}
			if len(p.blackouts) != tc.blackouts {
				t.Errorf("blackouts = %d, want %d", len(p.blackouts), tc.blackouts)
			}
		})
	}
}
