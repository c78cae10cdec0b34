package linksim

import (
	"strings"
	"testing"
	"time"
)

func TestSetParam(t *testing.T) {
	tests := []struct {
		name, param, value string
		want               Impairment
		wantErr            string
	}{
		{name: "loss sets independent loss", param: "loss", value: "0.1", want: Impairment{Loss: 0.1}},
		{name: "delay takes a duration", param: "delay", value: "100ms", want: Impairment{Delay: 100 * time.Millisecond}},
		{name: "rate takes a k suffix", param: "rate", value: "64k", want: Impairment{RateBitsPerSec: 64_000}},
		{name: "rate takes a fractional M suffix", param: "rate", value: "1.5M", want: Impairment{RateBitsPerSec: 1_500_000}},
		{name: "rate takes plain bits per second", param: "rate", value: "250000", want: Impairment{RateBitsPerSec: 250_000}},
		{name: "queue takes an integer", param: "queue", value: "16", want: Impairment{QueuePackets: 16}},
		{name: "mtu takes an integer", param: "mtu", value: "1400", want: Impairment{MTU: 1400}},
		{name: "gilbert-elliott entry probability", param: "ge-good-to-bad", value: "0.05", want: Impairment{PGoodToBad: 0.05}},
		{name: "blackout takes on", param: "blackout", value: "on", want: Impairment{Blackout: true}},
		{name: "surrounding space is ignored", param: "jitter", value: " 20ms ", want: Impairment{Jitter: 20 * time.Millisecond}},
		{name: "loss above one is rejected", param: "loss", value: "2", wantErr: "want a probability"},
		{name: "loss that is not a number is rejected", param: "loss", value: "lots", wantErr: "want a number"},
		{name: "delay without a unit is rejected", param: "delay", value: "100", wantErr: "want a duration"},
		{name: "negative delay is rejected", param: "delay", value: "-1s", wantErr: "want >= 0"},
		{name: "negative rate is rejected", param: "rate", value: "-1k", wantErr: "want a rate from 0"},
		{name: "rate beyond int64 is rejected", param: "rate", value: "1e30G", wantErr: "want a rate from 0"},
		{name: "blackout maybe is rejected", param: "blackout", value: "maybe", wantErr: "want on or off"},
		{name: "unknown parameter is rejected", param: "latency", value: "1s", wantErr: "unknown parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			imp := Impairment{}
			err := SetParam(&imp, tt.param, tt.value)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				if imp != (Impairment{}) {
					t.Errorf("got %+v after a rejected value, want it unchanged", imp)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if imp != tt.want {
				t.Errorf("got %+v, want %+v", imp, tt.want)
			}
		})
	}
}

func TestEveryFieldHasAParameter(t *testing.T) {
	// An impairment with every field set must name all of them in its text form.
	full := Impairment{
		Loss: 0.1, PGoodToBad: 0.2, PBadToGood: 0.3, LossInBad: 0.4, LossInGood: 0.05,
		Delay: time.Millisecond, Jitter: 2 * time.Millisecond, Reorder: 0.01, ReorderDelay: 3 * time.Millisecond,
		Duplicate: 0.02, RateBitsPerSec: 1, QueuePackets: 7, MTU: 576, Blackout: true,
	}
	got := Impairment{}
	for _, kv := range strings.Fields(full.String()) {
		name, value, _ := strings.Cut(kv, "=")
		if err := SetParam(&got, name, value); err != nil {
			t.Fatalf("SetParam(%q, %q): %v", name, value, err)
		}
	}
	if got != full {
		t.Errorf("got %+v back from %q, want %+v", got, full.String(), full)
	}
	if len(Params()) != len(strings.Fields(full.String())) {
		t.Errorf("got %d parameters, want one per field named in %q", len(Params()), full.String())
	}
}

func TestImpairmentString(t *testing.T) {
	tests := []struct {
		name string
		imp  Impairment
		want string
	}{
		{"clean link reads clean", Impairment{}, "clean"},
		{"telemetry radio reads as its parameters", telemetryRadio, "loss=0.05 delay=100ms jitter=20ms rate=64k queue=16"},
		{"odd rate is written in bits per second", Impairment{RateBitsPerSec: 64_001}, "rate=64001"},
		{"blackout reads on", Impairment{Blackout: true}, "blackout=on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.imp.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRateText(t *testing.T) {
	tests := []struct {
		text string
		bits int64
	}{
		{"0", 0}, {"999", 999}, {"64k", 64_000}, {"10M", 10_000_000}, {"2G", 2_000_000_000}, {"1500k", 1_500_000},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			got, err := ParseRate(tt.text)
			if err != nil || got != tt.bits {
				t.Errorf("got ParseRate(%q) = %d, %v, want %d", tt.text, got, err, tt.bits)
			}
			back, _ := ParseRate(FormatRate(tt.bits))
			if back != tt.bits {
				t.Errorf("got %d back from FormatRate(%d) = %q, want %d", back, tt.bits, FormatRate(tt.bits), tt.bits)
			}
		})
	}
}
