// Package wire is umbra's control-message format: CBOR with integer keys, encoded in
// core deterministic mode and decoded with explicit limits, framed on QUIC streams with
// a length prefix. Every message type is listed here; every decoder is fuzzed.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// Limits every decoder enforces.
const (
	// MaxMessageSize caps one framed message.
	MaxMessageSize = 64 << 10
	// maxNesting, maxArray and maxMap bound the CBOR structure of a message.
	maxNesting = 8
	maxArray   = 4096
	maxMap     = 64
	// headerSize is the frame header: a big-endian uint32 body length.
	headerSize = 4
)

// Type identifies a message.
type Type uint16

// Message types.
const (
	TypeHello    Type = 1 // agent/router → router/controller: who I am, what I speak
	TypeHelloAck Type = 2 // the answer: who accepted
	TypeError    Type = 3 // a refusal, with a one-line reason

	// Agent ↔ router, relayed router ↔ controller with the agent's identity filled in.
	TypeServicesRequest Type = 10 // what may I dial and bind?
	TypeServicesReply   Type = 11 // the services, with the caller's rights
	TypeBind            Type = 12 // host this service here; the stream is the lease
	TypeBindAck         Type = 13 // the binding is in place
	TypeDial            Type = 14 // open a circuit to this service
	TypeDialAck         Type = 15 // router → dialer: the circuit is up
	TypeDialGrant       Type = 16 // controller → router: the signed grant for a dial
	TypeRenew           Type = 17 // renew my certificate: same key, new certificate
	TypeRenewed         Type = 18 // the new certificate chain
	TypeTakeOver        Type = 19 // agent → router: this connection replaces the agent's others

	// Router → hosting agent.
	TypeCircuit    Type = 20 // a circuit for a service you host
	TypeCircuitAck Type = 21 // accepted

	// Controller → router.
	TypeRevoke Type = 30 // end what this stream set up; or, on its own stream, drop these certificates
	// TypeChanged: controller → router → agent, on a stream of its own: records changed
	// (a service, policy, identity or edge-router policy); ask for your services again.
	TypeChanged Type = 31
	// TypeControllers: controller → router, on a stream of its own: the controller
	// cluster's members changed; here is the list to fail over to.
	TypeControllers Type = 32

	// Router ↔ router, on a link (umbra-link/1).
	TypeHop      Type = 40 // carry this circuit onward: the next router or the hosting agent
	TypeHopAck   Type = 41 // the rest of the path is up
	TypeLinkPing Type = 42 // heartbeat; the peer echoes it as a LinkPong
	TypeLinkPong Type = 43 // the echo of a LinkPing

	// Router → controller.
	TypeLinkReport Type = 50 // the state of this router's links, replacing the last report
	TypeCarry      Type = 51 // I carry this granted circuit: hold it on this stream, revoke it when no longer allowed
	TypeCarryAck   Type = 52 // the circuit is allowed and held; a TypeRevoke on the stream ends it later
)

// QUIC error codes shared by the programs, so that each tells a revocation from a
// failure by its code, never by a message's text. The stream codes reset a circuit's
// streams (quic.StreamErrorCode); the connection code closes a connection
// (quic.ApplicationErrorCode).
const (
	// StreamCircuitFailed resets a circuit whose path broke: its agents resume it.
	StreamCircuitFailed = 1
	// StreamCircuitRevoked resets a circuit the controller no longer allows: its agents
	// end it at once.
	StreamCircuitRevoked = 2
	// ConnCertRevoked closes a connection whose peer's certificate was revoked: its
	// circuits end at once, as if each had been revoked.
	ConnCertRevoked = 0x102
	// ConnReplaced closes an agent's connection that a newer one of the same agent
	// replaced (TakeOver): its circuits resume on the new one.
	ConnReplaced = 0x105
	// ConnAgentGone closes the connection of an agent process that is gone: a new
	// instance of the same identity linked (it restarted), or its host answered the
	// router with ICMP port unreachable (nothing listens there any more). Its circuits
	// end with StreamCircuitPeerGone.
	ConnAgentGone = 0x104
	// StreamCircuitPeerGone resets a circuit whose agent at the far end is gone (see
	// ConnAgentGone): no resumption will come, so its agents end it at once.
	StreamCircuitPeerGone = 3
)

// Version is the control protocol version carried in Hello.
const Version = 1

// Hello opens a control stream.
type Hello struct {
	Version uint   `cbor:"1,keyasint"`
	Name    string `cbor:"2,keyasint,omitempty"`
	// Advertise is where a router can be reached (router → controller only).
	Advertise string `cbor:"3,keyasint,omitempty"`
	// Keys 4 and 5 are retired: they asked for the datagram lane beside QUIC, which
	// issue 17 removed. Never reuse them.
	// Software is the sender's release (internal/version.Version), for operators' lists.
	Software string `cbor:"6,keyasint,omitempty"`
	// Instance names the agent process: random, drawn once when it starts (agent →
	// router). A Hello of the same identity with another instance means the agent
	// restarted: the router closes the old instance's connections, ending their circuits
	// at once (StreamCircuitPeerGone).
	Instance []byte `cbor:"7,keyasint,omitempty"`
}

// TakeOver says the connection it arrives on replaces the agent's other connections to
// this router: a fresh connection that won the race against a stalled link. The router
// closes the others at once, whose close the agent sent but a dead path may have lost,
// so the circuits they carried move to the new connection without waiting for their
// idle timeout. No answer.
type TakeOver struct{}

// HelloAck accepts a Hello.
type HelloAck struct {
	Version uint   `cbor:"1,keyasint"`
	Name    string `cbor:"2,keyasint"`
	// Revoked lists certificate serials the receiver must refuse (controller → router).
	Revoked []string `cbor:"3,keyasint,omitempty"`
	// Keys 4 and 5 are retired (the datagram lane's, issue 17). Never reuse them.
	// Controllers lists the management URLs (https://HOST:PORT) of every member of the
	// controller cluster (controller → router), for the router to fail over to.
	Controllers []string `cbor:"6,keyasint,omitempty"`
}

// ServicesRequest asks for the services an identity may use. Identity is set by the
// router when it relays the request, never by the agent.
type ServicesRequest struct {
	Identity string `cbor:"1,keyasint,omitempty"`
}

// ServiceInfo is one service and what the asker may do with it.
type ServiceInfo struct {
	Name      string `cbor:"1,keyasint"`
	ID        string `cbor:"2,keyasint"`
	Host      string `cbor:"3,keyasint,omitempty"`
	Intercept string `cbor:"4,keyasint,omitempty"`
	Dial      bool   `cbor:"5,keyasint,omitempty"`
	Bind      bool   `cbor:"6,keyasint,omitempty"`
}

// ServicesReply answers a ServicesRequest.
type ServicesReply struct {
	Services []ServiceInfo `cbor:"1,keyasint"`
}

// Bind asks to host a service. The stream it opens stays open for as long as the
// binding lasts.
type Bind struct {
	Service  string `cbor:"1,keyasint"`
	Identity string `cbor:"2,keyasint,omitempty"` // set by the router
}

// BindAck confirms a Bind.
type BindAck struct{}

// Dial asks for a circuit to Service, on the hosting identity named Host if set. Resume,
// when set, moves an existing circuit to a new path; the hosting agent matches it.
type Dial struct {
	Service  string `cbor:"1,keyasint"`
	Host     string `cbor:"2,keyasint,omitempty"`
	Proto    string `cbor:"3,keyasint"`
	Identity string `cbor:"4,keyasint,omitempty"` // set by the router
	Resume   []byte `cbor:"5,keyasint,omitempty"`
	// Moving says the circuit named by Resume exists and moves to a new path.
	Moving bool `cbor:"6,keyasint,omitempty"`
	// Key 7 is retired (the datagram lane's, issue 17). Never reuse it.
}

// DialGrant is the controller's answer to a relayed Dial.
type DialGrant struct {
	Grant []byte `cbor:"1,keyasint"`
}

// DialAck tells the dialer its circuit is up. Circuit is the id its datagrams carry on
// this connection.
type DialAck struct {
	Circuit uint64 `cbor:"1,keyasint"`
	Grant   []byte `cbor:"2,keyasint"`
	// Key 3 is retired (the datagram lane's, issue 17). Never reuse it.
}

// Circuit hands a hosting agent a new circuit; Circuit is the id its datagrams carry on
// this connection. Resume, when set, is the dialer's token for a circuit that already
// exists and is moving to this stream.
type Circuit struct {
	Circuit uint64 `cbor:"1,keyasint"`
	Grant   []byte `cbor:"2,keyasint"`
	Resume  []byte `cbor:"3,keyasint,omitempty"`
	Moving  bool   `cbor:"4,keyasint,omitempty"`
	// Key 5 is retired (the datagram lane's, issue 17). Never reuse it.
}

// CircuitAck accepts a Circuit.
type CircuitAck struct{}

// Renew asks for a new certificate over the same key. CSR is DER. Cert is the caller's
// current certificate (DER), filled in by the router from the connection's handshake.
type Renew struct {
	CSR      []byte `cbor:"1,keyasint"`
	Identity string `cbor:"2,keyasint,omitempty"`
	Cert     []byte `cbor:"3,keyasint,omitempty"`
}

// Renewed carries the new PEM certificate chain.
type Renewed struct {
	Cert string `cbor:"1,keyasint"`
}

// Revoke ends what its stream set up (a binding or circuit), or lists certificate
// serials the router must drop and refuse from now on.
type Revoke struct {
	Reason  string   `cbor:"1,keyasint,omitempty"`
	Serials []string `cbor:"2,keyasint,omitempty"`
}

// Changed tells routers, and through them agents, that what identities may use may have
// changed: an agent asks for its services again and follows the answer.
type Changed struct{}

// Controllers is the controller cluster's members' management URLs, pushed to routers
// when the membership changes.
type Controllers struct {
	URLs []string `cbor:"1,keyasint"`
}

// Hop asks the next router on a circuit's path to carry it onward. Index is the
// receiver's position in the grant's router list; Circuit is the id the circuit's
// datagrams carry on this link, chosen by the sender.
type Hop struct {
	Grant   []byte `cbor:"1,keyasint"`
	Index   uint   `cbor:"2,keyasint"`
	Circuit uint64 `cbor:"3,keyasint"`
	Resume  []byte `cbor:"4,keyasint,omitempty"`
	Moving  bool   `cbor:"5,keyasint,omitempty"`
}

// HopAck tells the previous router the rest of the path is up.
type HopAck struct{}

// LinkPing is a link heartbeat; Sent is the sender's clock in nanoseconds, echoed back.
type LinkPing struct {
	Seq  uint64 `cbor:"1,keyasint"`
	Sent int64  `cbor:"2,keyasint"`
}

// LinkPong echoes a LinkPing.
type LinkPong struct {
	Seq  uint64 `cbor:"1,keyasint"`
	Sent int64  `cbor:"2,keyasint"`
}

// LinkState is one router link as its reporter sees it.
type LinkState struct {
	// Peer is the router id at the link's far end.
	Peer string `cbor:"1,keyasint"`
	// Up is whether the link carries heartbeats now.
	Up bool `cbor:"2,keyasint,omitempty"`
	// RTTMicros is the smoothed heartbeat round trip.
	RTTMicros uint64 `cbor:"3,keyasint,omitempty"`
	// LossPermille is the share of recent heartbeats unanswered, in thousandths.
	LossPermille uint16 `cbor:"4,keyasint,omitempty"`
	// Dialed is whether the reporter dialed this link (it may redial it).
	Dialed bool `cbor:"5,keyasint,omitempty"`
}

// LinkReport is every link of the reporting router, replacing its previous report.
type LinkReport struct {
	Links []LinkState `cbor:"1,keyasint"`
	// Agents is the link of each agent connected to the router, for the operator's
	// view of the fleet.
	Agents []AgentLink `cbor:"2,keyasint,omitempty"`
}

// AgentLink is one agent's link to the reporting router, as that router measures it.
type AgentLink struct {
	Identity     string `cbor:"1,keyasint"`           // the identity's id
	RTTMicros    uint64 `cbor:"2,keyasint,omitempty"` // QUIC's smoothed round trip
	LossPermille uint16 `cbor:"3,keyasint,omitempty"` // packets lost of those sent since the last report, per mille
}

// Carry tells a controller that the router carries a circuit it did not grant on this
// control link: the router's control link dropped and came back, perhaps to a restarted
// controller that never heard of the circuit. Grant is the circuit's signed grant, as
// the controller issued it; the controller checks it against the current policy and
// answers TypeCarryAck and holds the stream until the circuit ends, or TypeRevoke.
type Carry struct {
	Grant []byte `cbor:"1,keyasint"`
}

// CarryAck says the carried circuit is still allowed and now held on its stream.
type CarryAck struct{}

// Error refuses a request.
type Error struct {
	Message string `cbor:"1,keyasint"`
	// Code says what kind of refusal it is; programs act on it, never on Message.
	Code ErrorCode `cbor:"2,keyasint,omitempty"`
}

// ErrorCode classifies a refusal (Error.Code), so that a program tells one kind from
// another by its code, never by the text of its message.
type ErrorCode uint

// Refusal codes.
const (
	// CodeUnavailable (zero, and what a refusal without a code means): nothing says
	// waiting will not help — no host online yet, no path, no controller, a timeout.
	CodeUnavailable ErrorCode = 0
	// CodeNotAuthorized: the service does not exist or the asker may not use it (one
	// code and one message for both), or the identity is unknown, deleted or may not
	// use this router. Waiting will not change it.
	CodeNotAuthorized ErrorCode = 1
	// CodeUnknownCircuit: the host holds no circuit under the resumption token it was
	// asked to move (it restarted, or the circuit ended).
	CodeUnknownCircuit ErrorCode = 2
	// CodeMalformed: the request could not be read.
	CodeMalformed ErrorCode = 3
	// CodeBadRequest: the request was read and cannot be met as asked (a TCP dial of a
	// UDP service, say).
	CodeBadRequest ErrorCode = 4
)

// Permanent reports whether asking again, unchanged, will be refused again.
func (c ErrorCode) Permanent() bool { return c != CodeUnavailable }

// Refusal is a refusal as a Go error: what Expect returns for an Error answer, and what
// a program returns to have WriteError send its code.
type Refusal struct {
	Code    ErrorCode
	Message string
}

func (r *Refusal) Error() string { return r.Message }

// Refuse returns a refusal of code with the message msg.
func Refuse(code ErrorCode, msg string) error { return &Refusal{Code: code, Message: msg} }

// RefusalCode returns the code of the refusal err wraps, and whether it wraps one.
func RefusalCode(err error) (ErrorCode, bool) {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Code, true
	}
	return 0, false
}

// ErrorOf is the Error that answers err: its text, and the code of the refusal it
// wraps (CodeUnavailable when it wraps none).
func ErrorOf(err error) Error {
	code, _ := RefusalCode(err)
	return Error{Message: err.Error(), Code: code}
}

// envelope is what a frame holds: the type and the message's own CBOR.
type envelope struct {
	Type Type            `cbor:"1,keyasint"`
	Body cbor.RawMessage `cbor:"2,keyasint"`
}

var modes = sync.OnceValues(func() (cbor.EncMode, cbor.DecMode) {
	enc, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	dec, err := cbor.DecOptions{
		MaxNestedLevels:   maxNesting,
		MaxArrayElements:  maxArray,
		MaxMapPairs:       maxMap,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return enc, dec
})

// Marshal encodes v deterministically.
func Marshal(v any) ([]byte, error) {
	enc, _ := modes()
	return enc.Marshal(v)
}

// Unmarshal decodes data into v within the limits.
func Unmarshal(data []byte, v any) error {
	_, dec := modes()
	return dec.Unmarshal(data, v)
}

// Write frames msg of type t onto w.
func Write(w io.Writer, t Type, msg any) error {
	body, err := Marshal(msg)
	if err != nil {
		return fmt.Errorf("wire: encode %d: %w", t, err)
	}
	frame, err := Marshal(envelope{Type: t, Body: body})
	if err != nil {
		return fmt.Errorf("wire: encode %d: %w", t, err)
	}
	if len(frame) > MaxMessageSize {
		return fmt.Errorf("wire: message of %d bytes exceeds %d", len(frame), MaxMessageSize)
	}
	buf := make([]byte, headerSize+len(frame))
	binary.BigEndian.PutUint32(buf, uint32(len(frame)))
	copy(buf[headerSize:], frame)
	_, err = w.Write(buf)
	return err
}

// Read reads one frame from r and returns its type and undecoded body.
func Read(r io.Reader) (Type, []byte, error) {
	var hdr [headerSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessageSize {
		return 0, nil, fmt.Errorf("wire: message of %d bytes exceeds %d", n, MaxMessageSize)
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(r, frame); err != nil {
		return 0, nil, fmt.Errorf("wire: short message: %w", err)
	}
	return Decode(frame)
}

// Decode splits one frame body into its type and the message's CBOR.
func Decode(frame []byte) (Type, []byte, error) {
	var env envelope
	if err := Unmarshal(frame, &env); err != nil {
		return 0, nil, fmt.Errorf("wire: malformed message: %w", err)
	}
	return env.Type, env.Body, nil
}

// ErrUnexpected is returned by Expect for a message of another type.
var ErrUnexpected = errors.New("wire: unexpected message")

// Expect reads one message that must be of type t into v. A peer's Error message comes
// back as an error carrying its reason.
func Expect(r io.Reader, t Type, v any) error {
	got, body, err := Read(r)
	if err != nil {
		return err
	}
	if got == TypeError && t != TypeError {
		var e Error
		if err := Unmarshal(body, &e); err != nil {
			return fmt.Errorf("wire: malformed error: %w", err)
		}
		return fmt.Errorf("refused: %w", &Refusal{Code: e.Code, Message: e.Message})
	}
	if got != t {
		return fmt.Errorf("%w: got type %d, want %d", ErrUnexpected, got, t)
	}
	if err := Unmarshal(body, v); err != nil {
		return fmt.Errorf("wire: malformed message %d: %w", t, err)
	}
	return nil
}
