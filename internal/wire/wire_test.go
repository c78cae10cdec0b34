package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	want := Hello{Version: Version, Name: "router1", Advertise: "10.0.0.1:4433", Instance: []byte{7, 8}}
	if err := Write(&buf, TypeHello, want); err != nil {
		t.Fatal(err)
	}
	var got Hello
	if err := Expect(&buf, TypeHello, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestEncodingIsDeterministic(t *testing.T) {
	a, _ := Marshal(Hello{Version: 1, Name: "x", Advertise: "y"})
	b, _ := Marshal(Hello{Advertise: "y", Name: "x", Version: 1})
	if !bytes.Equal(a, b) {
		t.Errorf("same message encoded as %x and %x", a, b)
	}
}

func frame(body []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return append(out, body...)
}

func TestReadRefusals(t *testing.T) {
	hello, _ := Marshal(Hello{Version: 1})
	env := func(v any) []byte { b, _ := Marshal(v); return b }
	cases := []struct {
		name, wantErr string
		input         []byte
	}{
		{"oversized-length-prefix", "exceeds", binary.BigEndian.AppendUint32(nil, MaxMessageSize+1)},
		{"truncated-body", "short message", append(binary.BigEndian.AppendUint32(nil, 10), 1, 2)},
		{"garbage-body", "malformed", frame([]byte{0xff, 0xfe, 0x00})},
		{"duplicate-map-keys", "malformed", frame([]byte{0xa2, 0x01, 0x01, 0x01, 0x02})},
		{"indefinite-length", "malformed", frame([]byte{0xbf, 0x01, 0x01, 0xff})},
		{"deep-nesting", "malformed", frame(bytes.Repeat([]byte{0x81}, 20))},
		{"wrong-type", "unexpected message", frame(env(envelope{Type: TypeHelloAck, Body: hello}))},
		{"unknown-field", "malformed message", frame(env(envelope{Type: TypeHello, Body: env(map[int]int{1: 1, 99: 1})}))},
		{"peer-error-is-reported", "refused: go away", frame(env(envelope{Type: TypeError, Body: env(Error{Message: "go away"})}))},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			var h Hello
			err := Expect(bytes.NewReader(tt.input), TypeHello, &h)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

// messages makes an empty message of every type, for the fuzzer.
var messages = map[Type]func() any{
	TypeHello: func() any { return &Hello{} }, TypeHelloAck: func() any { return &HelloAck{} },
	TypeError: func() any { return &Error{} }, TypeServicesRequest: func() any { return &ServicesRequest{} },
	TypeServicesReply: func() any { return &ServicesReply{} }, TypeBind: func() any { return &Bind{} },
	TypeBindAck: func() any { return &BindAck{} }, TypeDial: func() any { return &Dial{} },
	TypeDialAck: func() any { return &DialAck{} }, TypeDialGrant: func() any { return &DialGrant{} },
	TypeRenew: func() any { return &Renew{} }, TypeRenewed: func() any { return &Renewed{} },
	TypeCircuit: func() any { return &Circuit{} }, TypeCircuitAck: func() any { return &CircuitAck{} },
	TypeRevoke: func() any { return &Revoke{} }, TypeHop: func() any { return &Hop{} },
	TypeHopAck: func() any { return &HopAck{} }, TypeLinkPing: func() any { return &LinkPing{} },
	TypeLinkPong: func() any { return &LinkPong{} }, TypeLinkReport: func() any { return &LinkReport{} },
	TypeCarry: func() any { return &Carry{} }, TypeCarryAck: func() any { return &CarryAck{} },
	TypeControllers: func() any { return &Controllers{} },
	TypeTakeOver:    func() any { return &TakeOver{} },
}

// FuzzRead feeds arbitrary bytes to the frame reader and every message decoder: no
// panic, and whatever decodes re-encodes within the size limit.
func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	Write(&buf, TypeHello, Hello{Version: 1, Name: "r1", Advertise: "127.0.0.1:1"})
	f.Add(buf.Bytes())
	buf.Reset()
	Write(&buf, TypeError, Error{Message: "no"})
	f.Add(buf.Bytes())
	buf.Reset()
	Write(&buf, TypeError, Error{Message: "unknown circuit", Code: CodeUnknownCircuit})
	f.Add(append([]byte(nil), buf.Bytes()...))
	f.Add([]byte{0, 0, 0, 1, 0xa0})
	for typ, msg := range map[Type]any{
		TypeServicesReply: ServicesReply{Services: []ServiceInfo{{Name: "mavlink", ID: "x", Host: "udp:127.0.0.1:14550", Dial: true}}},
		TypeDial:          Dial{Service: "mavlink", Host: "drone1", Proto: "udp"},
		TypeDialAck:       DialAck{Circuit: 7, Grant: []byte{1, 2, 3}},
		TypeRevoke:        Revoke{Reason: "gone", Serials: []string{"abc"}},
		TypeRenew:         Renew{CSR: []byte{0x30}},
		TypeHop:           Hop{Grant: []byte{1}, Index: 2, Circuit: 3, Resume: []byte{4}},
		TypeLinkPing:      LinkPing{Seq: 9, Sent: 1 << 40},
		TypeCarry:         Carry{Grant: []byte{5, 6}},
		TypeControllers:   Controllers{URLs: []string{"https://127.0.0.1:1280", "https://10.0.0.2:1280"}},
		TypeHelloAck:      HelloAck{Version: 1, Name: "controller1", Controllers: []string{"https://127.0.0.1:1280"}},
		TypeHello:         Hello{Version: 1, Name: "drone1", Instance: []byte{1, 2, 3, 4}},
		TypeTakeOver:      TakeOver{},
		TypeLinkReport:    LinkReport{Links: []LinkState{{Peer: "r2", Up: true, RTTMicros: 900, LossPermille: 100, Dialed: true}}, Agents: []AgentLink{{Identity: "d1", RTTMicros: 210000, LossPermille: 150}}},
	} {
		buf.Reset()
		Write(&buf, typ, msg)
		f.Add(append([]byte(nil), buf.Bytes()...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, body, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		newMsg, ok := messages[typ]
		if !ok {
			return
		}
		v := newMsg()
		if Unmarshal(body, v) != nil {
			return
		}
		var out bytes.Buffer
		if err := Write(&out, typ, v); err != nil {
			t.Fatalf("decoded message does not re-encode: %v", err)
		}
	})
}

// TestRefusalCarriesItsCode: a refusal's code crosses the wire and comes out of Expect,
// whatever its message says; a refusal without one is CodeUnavailable.
func TestRefusalCarriesItsCode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sent      Error
		want      ErrorCode
		permanent bool
	}{
		{"not-authorized", ErrorOf(fmt.Errorf("bind %q: %w", "x", Refuse(CodeNotAuthorized, "service not found or not authorized"))), CodeNotAuthorized, true},
		{"unknown-circuit", Error{Message: "whatever the host says", Code: CodeUnknownCircuit}, CodeUnknownCircuit, true},
		{"text-alone-means-nothing", Error{Message: "not authorized"}, CodeUnavailable, false},
		{"plain-error", ErrorOf(errors.New("no host online")), CodeUnavailable, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, TypeError, tc.sent); err != nil {
				t.Fatal(err)
			}
			err := Expect(&buf, TypeDialAck, &DialAck{})
			code, ok := RefusalCode(err)
			if !ok || code != tc.want || code.Permanent() != tc.permanent {
				t.Errorf("got code %d (a refusal: %v, permanent %v) from %v, want %d (permanent %v)", code, ok, code.Permanent(), err, tc.want, tc.permanent)
			}
			if !strings.Contains(err.Error(), tc.sent.Message) {
				t.Errorf("error %q lost the message %q", err, tc.sent.Message)
			}
		})
	}
}
