package linksim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A parameter is one Impairment field under the name people type: the same name is a
// flag of `umbra linksim` (--loss 0.1), a console command (loss 0.1) and a key of a
// profile file ({"loss": 0.1}), so there is one vocabulary for all three.
type param struct {
	name, usage string
	// set parses text into the field.
	set func(imp *Impairment, v string) error
	// value returns the field for display and JSON, and whether it is set (non-zero).
	value func(imp *Impairment) (any, bool)
}

// params lists every Impairment field, in the order they are shown.
var params = []param{
	probParam("loss", "independent random loss probability, 0..1", func(i *Impairment) *float64 { return &i.Loss }),
	probParam("ge-good-to-bad", "Gilbert–Elliott: per-packet probability of entering the bad state (0 disables the model)", func(i *Impairment) *float64 { return &i.PGoodToBad }),
	probParam("ge-bad-to-good", "Gilbert–Elliott: per-packet probability of leaving the bad state (0 means 1-ge-good-to-bad)", func(i *Impairment) *float64 { return &i.PBadToGood }),
	probParam("ge-loss-bad", "Gilbert–Elliott: loss probability in the bad state (0 means 1)", func(i *Impairment) *float64 { return &i.LossInBad }),
	probParam("ge-loss-good", "Gilbert–Elliott: loss probability in the good state", func(i *Impairment) *float64 { return &i.LossInGood }),
	durParam("delay", "one-way delay, such as 100ms", func(i *Impairment) *time.Duration { return &i.Delay }),
	durParam("jitter", "delay varies uniformly by ± this much, such as 20ms", func(i *Impairment) *time.Duration { return &i.Jitter }),
	probParam("reorder", "probability a packet is held back and overtaken, 0..1", func(i *Impairment) *float64 { return &i.Reorder }),
	durParam("reorder-delay", "how long a reordered packet is held back (0 means 10ms)", func(i *Impairment) *time.Duration { return &i.ReorderDelay }),
	probParam("duplicate", "probability a packet is delivered twice, 0..1", func(i *Impairment) *float64 { return &i.Duplicate }),
	{
		name:  "rate",
		usage: "rate cap in bit/s, with an optional k, M or G suffix, such as 64k (0 means no cap)",
		set: func(i *Impairment, v string) (err error) {
			i.RateBitsPerSec, err = ParseRate(v)
			return err
		},
		value: func(i *Impairment) (any, bool) { return i.RateBitsPerSec, i.RateBitsPerSec != 0 },
	},
	intParam("queue", "packets the rate cap may queue before tail drop (0 means 100)", func(i *Impairment) *int { return &i.QueuePackets }),
	intParam("mtu", "largest IP packet carried, in bytes (0 means no limit)", func(i *Impairment) *int { return &i.MTU }),
	{
		name:  "blackout",
		usage: "drop every packet: on or off",
		set: func(i *Impairment, v string) (err error) {
			i.Blackout, err = parseOnOff(v)
			return err
		},
		value: func(i *Impairment) (any, bool) { return i.Blackout, i.Blackout },
	},
}

func probParam(name, usage string, field func(*Impairment) *float64) param {
	return param{
		name: name, usage: usage,
		set: func(i *Impairment, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("want a number, got %q", v)
			}
			*field(i) = f
			return nil
		},
		value: func(i *Impairment) (any, bool) { return *field(i), *field(i) != 0 },
	}
}

func durParam(name, usage string, field func(*Impairment) *time.Duration) param {
	return param{
		name: name, usage: usage,
		set: func(i *Impairment, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("want a duration such as 50ms, got %q", v)
			}
			*field(i) = d
			return nil
		},
		value: func(i *Impairment) (any, bool) { return *field(i), *field(i) != 0 },
	}
}

func intParam(name, usage string, field func(*Impairment) *int) param {
	return param{
		name: name, usage: usage,
		set: func(i *Impairment, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("want an integer, got %q", v)
			}
			*field(i) = n
			return nil
		},
		value: func(i *Impairment) (any, bool) { return *field(i), *field(i) != 0 },
	}
}

func parseOnOff(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "on", "true", "1":
		return true, nil
	case "off", "false", "0":
		return false, nil
	}
	return false, fmt.Errorf("want on or off, got %q", v)
}

func lookupParam(name string) (*param, bool) {
	for i := range params {
		if params[i].name == name {
			return &params[i], true
		}
	}
	return nil, false
}

// Param describes one impairment parameter for help texts and flag definitions.
type Param struct {
	// Name is how the parameter is written: a flag, console command or profile key.
	Name string
	// Usage says in a line what the value means and what zero means.
	Usage string
}

// Params lists the parameters SetParam accepts, in display order.
func Params() []Param {
	out := make([]Param, len(params))
	for i, p := range params {
		out[i] = Param{Name: p.name, Usage: p.usage}
	}
	return out
}

// SetParam sets the parameter name of imp from its text form, such as ("loss", "0.1"),
// ("delay", "100ms") or ("rate", "64k"), and checks the result with Validate. On error
// imp is left as it was.
func SetParam(imp *Impairment, name, value string) error {
	p, ok := lookupParam(name)
	if !ok {
		return fmt.Errorf("linksim: unknown parameter %q", name)
	}
	next := *imp
	if err := p.set(&next, strings.TrimSpace(value)); err != nil {
		return fmt.Errorf("linksim: %s: %w", name, err)
	}
	if err := next.check(); err != nil {
		return fmt.Errorf("linksim: %s %s: %w", name, value, err)
	}
	*imp = next
	return nil
}

// String lists the parameters that are set, as name=value in the vocabulary of
// SetParam (such as "loss=0.05 delay=100ms rate=64k"), or "clean" if none is.
func (imp Impairment) String() string {
	var b strings.Builder
	for _, p := range params {
		v, set := p.value(&imp)
		if !set {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.name)
		b.WriteByte('=')
		b.WriteString(formatValue(p.name, v))
	}
	if b.Len() == 0 {
		return "clean"
	}
	return b.String()
}

func formatValue(name string, v any) string {
	switch v := v.(type) {
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case int64:
		if name == "rate" {
			return FormatRate(v)
		}
		return strconv.FormatInt(v, 10)
	case bool:
		if v {
			return "on"
		}
		return "off"
	}
	return fmt.Sprint(v)
}

// rateUnits are the suffixes ParseRate and FormatRate know, largest first.
var rateUnits = []struct {
	suffix string
	mult   float64
}{{"G", 1e9}, {"M", 1e6}, {"k", 1e3}}

// ParseRate parses a rate in bit/s with an optional k, M or G suffix (powers of
// 1000), such as "64k", "1.5M" or "250000".
func ParseRate(s string) (int64, error) {
	num, mult := s, 1.0
	for _, u := range rateUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("want a rate in bit/s such as 64k or 10M, got %q", s)
	}
	v := math.Round(f * mult)
	// The negated form also rejects NaN; 2^63 itself does not fit an int64.
	if !(v >= 0 && v < math.MaxInt64) {
		return 0, fmt.Errorf("want a rate from 0 to 2^63 bit/s, got %q", s)
	}
	return int64(v), nil
}

// FormatRate writes bits/s in the shortest exact form ParseRate reads back, such as
// "64k" or "10M".
func FormatRate(bits int64) string {
	for _, u := range rateUnits {
		m := int64(u.mult)
		if bits != 0 && bits%m == 0 {
			return strconv.FormatInt(bits/m, 10) + u.suffix
		}
	}
	return strconv.FormatInt(bits, 10)
}

// MarshalJSON writes the parameters that are set as one object keyed by parameter
// name: probabilities and sizes as numbers, durations as strings ("100ms"), the rate
// in bit/s as a number, blackout as a boolean. A clean link is {}.
func (imp Impairment) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for _, p := range params {
		v, set := p.value(&imp)
		if !set {
			continue
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		key, _ := json.Marshal(p.name)
		val, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("linksim: %s: %w", p.name, err)
		}
		b.Write(key)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads the form MarshalJSON writes. Values may also be written as
// strings in SetParam's text form ("rate": "64k"). Unknown keys and values out of
// range are errors; parameters absent from the object are zero.
func (imp *Impairment) UnmarshalJSON(data []byte) error {
	next, err := decodeImpairment(data)
	if err != nil {
		return fmt.Errorf("linksim: impairment: %w", err)
	}
	*imp = next
	return nil
}

// decodeImpairment is UnmarshalJSON without the package prefix on its errors.
func decodeImpairment(data []byte) (Impairment, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return Impairment{}, err
	}
	if fields == nil {
		return Impairment{}, fmt.Errorf("want an object, got %s", bytes.TrimSpace(data))
	}
	var next Impairment
	// In display order, so the first error reported does not depend on map order.
	for _, p := range params {
		raw, ok := fields[p.name]
		if !ok {
			continue
		}
		delete(fields, p.name)
		text, err := jsonScalar(raw)
		if err != nil {
			return Impairment{}, fmt.Errorf("%s: %w", p.name, err)
		}
		if err := p.set(&next, text); err != nil {
			return Impairment{}, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	if len(fields) > 0 {
		unknown := slices.Sorted(maps.Keys(fields))
		return Impairment{}, fmt.Errorf("unknown parameter %q", unknown[0])
	}
	if err := next.check(); err != nil {
		return Impairment{}, err
	}
	return next, nil
}

// jsonScalar returns the text of a JSON string, number or boolean.
func jsonScalar(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	switch v.(type) {
	case float64, bool:
		return string(raw), nil
	}
	return "", fmt.Errorf("want a number, string or boolean, got %s", raw)
}
