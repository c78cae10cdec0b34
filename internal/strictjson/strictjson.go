// Package strictjson decodes JSON bodies strictly: every object key must equal a field's
// JSON name exactly, no object may repeat a key, and nothing may follow the value.
//
// encoding/json matches field names case-insensitively (`{"ADMIN": true}` sets a field
// tagged "admin", past DisallowUnknownFields) and keeps the last of two equal keys.
// Check walks the document's tokens beside the Go type it is meant for and refuses both
// before encoding/json sees it; encoding/json still decodes the values and checks their
// types. The package owns that check and nothing else: no limits on size (the caller
// caps what it reads), no I/O.
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// MaxDepth bounds how deeply objects and arrays may nest. The bodies umbra reads nest
// two or three levels; the bound keeps the walk's recursion small for any input.
const MaxDepth = 32

// Reasons a document is refused; an *Error wraps one of them.
var (
	ErrUnknownField = errors.New("unknown field")
	ErrDuplicateKey = errors.New("duplicate key")
	ErrTooDeep      = errors.New("nested too deeply")
	ErrTrailing     = errors.New("trailing data after the JSON value")
)

// Error says which key of the document is refused, and why.
type Error struct {
	// Path is where the key is: "" for the top-level object, "a.b[2]" below it.
	Path string
	// Key is the refused key.
	Key string
	// Reason is ErrUnknownField, ErrDuplicateKey or ErrTooDeep.
	Reason error
	// Hint is the field's exact name when Key differs from it only in case.
	Hint string
}

// Error reads `unknown field "ADMIN" (names are case-sensitive: did you mean "admin"?)`.
func (e *Error) Error() string {
	where := join(e.Path, e.Key)
	if where == "" {
		where = "(top level)"
	}
	msg := fmt.Sprintf("%v %q", e.Reason, where)
	if e.Hint != "" {
		msg += fmt.Sprintf(" (names are case-sensitive: did you mean %q?)", join(e.Path, e.Hint))
	}
	return msg
}

// Unwrap returns the reason, for errors.Is.
func (e *Error) Unwrap() error { return e.Reason }

// Decode checks data against v's type (Check), decodes it into v with unknown fields
// refused, and refuses anything after the value.
func Decode(data []byte, v any) error {
	if err := Check(data, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return ErrTrailing
	}
	return nil
}

// Check refuses data if an object in it repeats a key, or has a key that is not exactly
// the JSON name of a field of the struct it would decode into. Values whose type
// decodes itself (json.Unmarshaler, json.RawMessage, interfaces) are still checked for
// repeated keys. Syntax errors are reported as encoding/json reports them.
func Check(data []byte, v any) error {
	w := walker{dec: json.NewDecoder(bytes.NewReader(data))}
	w.dec.UseNumber()
	return w.value(reflect.TypeOf(v), "", 0)
}

// walker reads a document's tokens in order, knowing the Go type each value is for.
type walker struct {
	dec *json.Decoder
}

// value reads one value meant for type t (nil: any type).
func (w *walker) value(t reflect.Type, path string, depth int) error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar: encoding/json checks its type
	}
	if depth >= MaxDepth {
		return &Error{Path: path, Reason: ErrTooDeep}
	}
	t = target(t)
	if d == '[' {
		return w.array(t, path, depth+1)
	}
	return w.object(t, path, depth+1)
}

// object reads the members of an object up to its closing brace.
func (w *walker) object(t reflect.Type, path string, depth int) error {
	var fields map[string]reflect.Type
	if t != nil && t.Kind() == reflect.Struct {
		fields = map[string]reflect.Type{}
		fieldsOf(t, fields)
	}
	seen := map[string]bool{}
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if seen[key] {
			return &Error{Path: path, Key: key, Reason: ErrDuplicateKey}
		}
		seen[key] = true
		var elem reflect.Type
		switch {
		case fields != nil:
			ft, ok := fields[key]
			if !ok {
				return &Error{Path: path, Key: key, Reason: ErrUnknownField, Hint: foldMatch(fields, key)}
			}
			elem = ft
		case t != nil && t.Kind() == reflect.Map:
			elem = t.Elem()
		}
		if err := w.value(elem, join(path, key), depth); err != nil {
			return err
		}
	}
	_, err := w.dec.Token() // '}'
	return err
}

// array reads the elements of an array up to its closing bracket.
func (w *walker) array(t reflect.Type, path string, depth int) error {
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	for i := 0; w.dec.More(); i++ {
		if err := w.value(elem, path+"["+strconv.Itoa(i)+"]", depth); err != nil {
			return err
		}
	}
	_, err := w.dec.Token() // ']'
	return err
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// target is the type whose shape the value must have: t without pointers, or nil when
// any shape goes (an interface, or a type that decodes itself).
func target(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() == reflect.Interface {
		return nil
	}
	pt := reflect.PointerTo(t)
	if pt.Implements(jsonUnmarshaler) || pt.Implements(textUnmarshaler) {
		return nil
	}
	return t
}

// fieldsOf adds the JSON names of struct t's fields to into, as encoding/json names
// them: the tag's name, else the Go name; "-" skipped; untagged embedded structs' fields
// promoted, the shallower field winning.
func fieldsOf(t reflect.Type, into map[string]reflect.Type) {
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			if et := derefType(f.Type); et.Kind() == reflect.Struct {
				embedded = append(embedded, et)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		into[name] = f.Type
	}
	for _, et := range embedded {
		inner := map[string]reflect.Type{}
		fieldsOf(et, inner)
		for name, ft := range inner {
			if _, ok := into[name]; !ok {
				into[name] = ft
			}
		}
	}
}

func derefType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// foldMatch returns the field name that key matches but for case, if any.
func foldMatch(fields map[string]reflect.Type, key string) string {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return name
		}
	}
	return ""
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
