package agent

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/umbranet/umbra/internal/wire"
)

// TestPermanentRefusalIsTheCodeNotTheText: a resumption stops on a refusal whose code
// says waiting will not help, and goes on through any other, whatever the message says.
func TestPermanentRefusalIsTheCodeNotTheText(t *testing.T) {
	for _, tc := range []struct {
		name string
		sent wire.Error
		want bool
	}{
		{"not-authorized", wire.Error{Message: "service not found or not authorized", Code: wire.CodeNotAuthorized}, true},
		{"unknown-circuit", wire.Error{Message: "refused: unknown circuit", Code: wire.CodeUnknownCircuit}, true},
		{"host-offline", wire.Error{Message: "host went offline"}, false},
		{"text-saying-not-authorized-without-its-code", wire.Error{Message: "not authorized"}, false},
		{"text-saying-unknown-circuit-without-its-code", wire.Error{Message: errUnknownCircuit}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			wire.Write(&buf, wire.TypeError, tc.sent)
			err := wire.Expect(&buf, wire.TypeDialAck, &wire.DialAck{})
			if got := isPermanentRefusal(fmt.Errorf("redial: %w", err)); got != tc.want {
				t.Errorf("isPermanentRefusal(%v) = %v, want %v", err, got, tc.want)
			}
		})
	}
	if isPermanentRefusal(errors.New("timeout: no recent network activity")) {
		t.Error("a timeout read as a permanent refusal")
	}
}
