package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestFormatOperateTableShowsMediansAndRatio(t *testing.T) {
	got := formatOperateTable(operateTable{
		title:   "Title",
		explain: "What was measured.",
		rows: []operateRow{{
			figure: "update to first circuit",
			runs:   []time.Duration{300 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond},
			peer:   "a new circuit",
			peers:  []time.Duration{50 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond},
		}},
	})
	for _, want := range []string{
		"### Title\n\nWhat was measured.\n\n",
		"| figure | umbra | peer (same run) | ratio |\n|---|---|---|---|\n",
		"| update to first circuit | 200.0 ms | a new circuit: 50.0 ms | 4.0× |\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table = %q, want it to contain %q", got, want)
		}
	}
}

func TestDurationRatio(t *testing.T) {
	for _, tt := range []struct {
		name string
		a, b time.Duration
		want string
	}{
		{"twice-the-peer", 2 * time.Second, time.Second, "2.0×"},
		{"as-fast-as-the-peer", time.Second, time.Second, "1.0×"},
		{"faster-than-the-peer", 250 * time.Millisecond, time.Second, "0.2×"},
		{"no-peer", time.Second, 0, "—"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := durationRatio(tt.a, tt.b); got != tt.want {
				t.Errorf("durationRatio(%v, %v) = %q, want %q", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestMedianTakesTheMiddleOfTheSorted(t *testing.T) {
	for _, tt := range []struct {
		name string
		ds   []time.Duration
		want time.Duration
	}{
		{"one", []time.Duration{7}, 7},
		{"odd-unsorted", []time.Duration{9, 1, 5}, 5},
		{"even-takes-the-upper-middle", []time.Duration{4, 1, 3, 2}, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := median(tt.ds); got != tt.want {
				t.Errorf("median(%v) = %v, want %v", tt.ds, got, tt.want)
			}
		})
	}
}

func TestEchoThroughReadsTheGreetingAndEchoes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := serveGreetingEcho(ctx, "second")
	if err != nil {
		t.Fatal(err)
	}
	got, err := echoThrough(addr, 5*time.Second)
	if err != nil {
		t.Fatalf("echoThrough: %v", err)
	}
	if got != "second" {
		t.Errorf("greeting = %q, want %q", got, "second")
	}
}
