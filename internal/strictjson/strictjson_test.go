package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Port int `json:"port"`
}

type Embedded struct {
	Shared string `json:"shared"`
}

type body struct {
	Embedded
	Name    string            `json:"name"`
	Admin   bool              `json:"admin,omitempty"`
	Attrs   []string          `json:"attributes"`
	Inner   *inner            `json:"inner"`
	List    []inner           `json:"list"`
	Labels  map[string]inner  `json:"labels"`
	Raw     json.RawMessage   `json:"raw"`
	Any     any               `json:"any"`
	When    time.Time         `json:"when"`
	Skipped string            `json:"-"`
	Untag   string            // named "Untag" by encoding/json
	Nested  map[string][]bool `json:"nested"`
	private string
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error // nil: accepted
		text string
	}{
		{"exact names are accepted", `{"name":"x","admin":true,"attributes":["a"],"inner":{"port":1}}`, nil, ""},
		{"an embedded struct's fields are accepted", `{"shared":"s"}`, nil, ""},
		{"an untagged field is known by its Go name", `{"Untag":"u"}`, nil, ""},
		{"a map takes any keys", `{"labels":{"Anything":{"port":2}}}`, nil, ""},
		{"raw and interface values take any keys", `{"raw":{"X":1,"x":2},"any":{"Y":[1,{"y":2}]}}`, nil, ""},
		{"a self-decoding type takes its own form", `{"when":"2026-01-02T03:04:05Z"}`, nil, ""},
		{"an upper-case variant of a field is refused", `{"name":"x","ADMIN":true}`, ErrUnknownField, `unknown field "ADMIN" (names are case-sensitive: did you mean "admin"?)`},
		{"a mixed-case variant of a field is refused", `{"Name":"x"}`, ErrUnknownField, `did you mean "name"`},
		{"a case variant inside a nested object is refused", `{"inner":{"PORT":1}}`, ErrUnknownField, `"inner.PORT"`},
		{"a case variant inside an array's object is refused", `{"list":[{"port":1},{"Port":2}]}`, ErrUnknownField, `"list[1].Port"`},
		{"a case variant inside a map's value is refused", `{"labels":{"a":{"pOrt":1}}}`, ErrUnknownField, `"labels.a.pOrt"`},
		{"an unknown field is refused", `{"root":true}`, ErrUnknownField, `unknown field "root"`},
		{"a skipped field is unknown", `{"Skipped":"x"}`, ErrUnknownField, `"Skipped"`},
		{"an unexported field is unknown", `{"private":"x"}`, ErrUnknownField, `"private"`},
		{"a repeated key is refused", `{"name":"x","name":"y"}`, ErrDuplicateKey, `duplicate key "name"`},
		{"a repeated key in a map is refused", `{"labels":{"a":{},"a":{}}}`, ErrDuplicateKey, `"labels.a"`},
		{"a repeated key in a raw value is refused", `{"raw":{"k":1,"k":2}}`, ErrDuplicateKey, `"raw.k"`},
		{"a repeated key deep in an interface is refused", `{"any":[{"a":{"b":1,"b":1}}]}`, ErrDuplicateKey, `"any[0].a.b"`},
		{"nesting beyond the bound is refused", `{"any":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`, ErrTooDeep, "nested too deeply"},
		{"trailing data is refused", `{"name":"x"} {}`, ErrTrailing, "trailing data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v body
			err := Decode([]byte(tt.in), &v)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), tt.text) {
				t.Errorf("got %q, want it to contain %q", err, tt.text)
			}
		})
	}
}

// TestDecodeLeavesTypesToEncodingJSON: syntax and type errors come from encoding/json,
// and nothing in v is set by a refused document's check.
func TestDecodeLeavesTypesToEncodingJSON(t *testing.T) {
	for _, in := range []string{`{"name":7}`, `{"name":`, `[1]`, `"x"`} {
		var v body
		err := Decode([]byte(in), &v)
		if err == nil {
			t.Errorf("Decode(%s): got nil error, want encoding/json's", in)
		}
		var se *Error
		if errors.As(err, &se) {
			t.Errorf("Decode(%s): got strictjson error %v, want encoding/json's", in, err)
		}
	}
	var v body
	if err := Decode([]byte(`{"name":"kept","NAME":"x"}`), &v); err == nil || v.Name != "" {
		t.Errorf("got name %q and error %v, want nothing decoded and a refusal", v.Name, err)
	}
}

// FuzzDecode: Check never panics, and whatever Decode accepts encoding/json decodes to
// the same value.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"name":"x","ADMIN":true}`))
	f.Add([]byte(`{"name":"x","name":"y"}`))
	f.Add([]byte(`{"labels":{"a":{"port":1}},"list":[{"port":2}],"any":{"k":[null]}}`))
	f.Add([]byte(`{"raw":{"a":1},"when":"2026-01-02T03:04:05Z","shared":"s"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var strict body
		if Decode(data, &strict) != nil {
			return
		}
		var loose body
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&loose); err != nil {
			t.Fatalf("got strict accept and encoding/json error %v for %q, want both to accept", err, data)
		}
		if !reflect.DeepEqual(normalize(t, strict), normalize(t, loose)) {
			t.Fatalf("got %+v strictly and %+v from encoding/json for %q, want them equal", strict, loose, data)
		}
	})
}

// normalize re-encodes v so that values DeepEqual cannot compare (time zones, raw
// spacing) compare by their JSON.
func normalize(t *testing.T, v body) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "unmarshalable: " + err.Error()
	}
	return string(b)
}
