package bootcfg

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func qemuConfig() Config {
	c := Default()
	c.Built = time.Date(2026, 11, 24, 18, 0, 0, 0, time.UTC)
	c.Modules = []string{"/lib/modules/failover.ko", "/lib/modules/virtio_net.ko"}
	c.Routers = []string{"198.18.0.1:4433"}
	c.Hosts = []string{"echo=tcp:127.0.0.1:7007"}
	c.Echo = "127.0.0.1:7007"
	return c
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	want := qemuConfig()
	b, err := want.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Encode()) = %v\n%s", err, b)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip = %+v, want %+v", got, want)
	}
	if !strings.Contains(string(b), `"address": "10.0.2.15/24"`) {
		t.Errorf("encoded address is not readable text:\n%s", b)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, _ := qemuConfig().Encode()
	for _, tc := range []struct{ name, from, to, want string }{
		{"unknown-field", `"interface"`, `"interfase": "eth0", "interface"`, "unknown field"},
		{"relative-agent-path", `"/bin/umbra-agent"`, `"bin/umbra-agent"`, "agent"},
		{"ipv6-address", `"10.0.2.15/24"`, `"fd00::2/64"`, "IPv4"},
		{"address-without-prefix", `"10.0.2.15/24"`, `"10.0.2.15"`, "no '/'"},
		{"router-without-port", `"198.18.0.1:4433"`, `"198.18.0.1"`, "HOST:PORT"},
		{"echo-off-loopback", `"echo": "127.0.0.1:7007"`, `"echo": "0.0.0.0:7007"`, "loopback"},
		{"host-without-service", `"echo=tcp:127.0.0.1:7007"`, `"=tcp:127.0.0.1:7007"`, "SERVICE=PROTO:ADDR"},
		{"module-not-ko", `"/lib/modules/failover.ko"`, `"/lib/modules/failover"`, "module"},
		{"trailing-data", "}\n", "}{}", "after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(string(good), tc.from, tc.to, 1)
			if in == string(good) {
				t.Fatalf("test case does not change the input (%q not found)", tc.from)
			}
			_, err := Decode([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := Decode([]byte(strings.Repeat(" ", maxSize+1))); err == nil {
		t.Errorf("oversized configuration accepted")
	}
}

func TestConsoleLines(t *testing.T) {
	line := Line(EventReady, "uptime", 12.5, "hosting", "echo")
	if line != "umbra-init: ready uptime=12.5 hosting=echo" {
		t.Errorf("Line = %q", line)
	}
	ev, f, ok := ParseLine(line + "\r\n")
	if !ok || ev != EventReady || f["uptime"] != "12.5" || f["hosting"] != "echo" {
		t.Errorf("ParseLine(%q) = %q %v %v, want ready with its fields", line, ev, f, ok)
	}
	for _, other := range []string{"[    1.8] reboot: Power down", "umbra-init: ", `time=x level=INFO msg="link up"`} {
		if _, _, ok := ParseLine(other); ok {
			t.Errorf("ParseLine(%q) took it for an init line", other)
		}
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := qemuConfig().Encode()
	f.Add(good)
	f.Add([]byte(`{"interface":"eth0","address":"10.0.2.15/24","gateway":"10.0.2.2"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			return
		}
		if c.Validate() != nil {
			t.Fatalf("Decode accepted a configuration Validate refuses: %+v", c)
		}
		if c.Echo != "" && !netip.MustParseAddrPort(c.Echo).Addr().IsLoopback() {
			t.Fatalf("echo off loopback accepted: %s", c.Echo)
		}
		again, err := c.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded configuration: %v", err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatalf("decoded configuration does not decode again: %v\n%s", err, again)
		}
	})
}
