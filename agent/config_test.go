package agent

import (
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/transport"
)

// TestConfigDefaults: the zero Config means what `umbra-agent run` does without flags,
// and the radio profile changes only the QUIC profile.
func TestConfigDefaults(t *testing.T) {
	id := &Identity{file: &identity.File{Name: "drone1"}}
	tests := []struct {
		name        string
		cfg         Config
		wantProfile transport.Profile
		wantFlush   time.Duration
		wantErr     bool
	}{
		{name: "zero is the lan profile", cfg: Config{}, wantProfile: transport.LAN},
		{name: "radio is the radio profile", cfg: Config{LinkProfile: ProfileRadio}, wantProfile: transport.Radio},
		{name: "fec without a flush delay gets the agent's", cfg: Config{UDPFEC: FEC{K: 32, M: 8}}, wantProfile: transport.LAN, wantFlush: DefaultFECFlush},
		{name: "fec keeps its flush delay", cfg: Config{UDPFEC: FEC{K: 16, M: 4, Flush: 80 * time.Millisecond}}, wantProfile: transport.LAN, wantFlush: 80 * time.Millisecond},
		{name: "fec too large is refused", cfg: Config{UDPFEC: FEC{K: 60, M: 10}}, wantErr: true},
		{name: "an unknown profile is refused", cfg: Config{LinkProfile: "satellite"}, wantErr: true},
		{name: "a dial listener off loopback is refused", cfg: Config{Dials: []DialSpec{{Service: "echo", Proto: ProtoTCP, Listen: "0.0.0.0:7000"}}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Identity = id
			st, err := cfg.resolve()
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if st.profile != tt.wantProfile {
				t.Errorf("got profile %+v, want %+v", st.profile, tt.wantProfile)
			}
			if st.fec.FlushDelay != tt.wantFlush {
				t.Errorf("got FEC flush %v, want %v", st.fec.FlushDelay, tt.wantFlush)
			}
			if cfg.Logger == nil {
				t.Errorf("got no logger, want one that discards")
			}
		})
	}
	if _, err := (&Config{}).resolve(); err == nil {
		t.Errorf("a Config without an identity was accepted")
	}
}
