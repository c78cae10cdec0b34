package bootcfg

import (
	"fmt"
	"strings"
)

// ConsolePrefix starts every line init writes to the console; the agent's own log lines
// are interleaved without it.
const ConsolePrefix = "umbra-init: "

// Events init reports, each the first word after ConsolePrefix. A watcher waits for
// EventReady, reads EventRSS for the agent's memory, and gives up at EventFatal (after
// which init powers the board off).
const (
	// EventStart: init is running; uptime=SECONDS since the kernel started.
	EventStart = "start"
	// EventBoard: the board umbra-agent detected, board=ID.
	EventBoard = "board"
	// EventReady: the agent hosts every service it may bind; uptime=SECONDS, hosting=LIST.
	EventReady = "ready"
	// EventRSS: the agent's memory, rss_kb=N hwm_kb=N (VmRSS and VmHWM).
	EventRSS = "rss"
	// EventFatal: init cannot go on; the rest of the line is the error, as free text.
	EventFatal = "fatal"
)

// Line formats one console line: the prefix, the event, then key=value fields.
func Line(event string, kv ...any) string {
	var b strings.Builder
	b.WriteString(ConsolePrefix)
	b.WriteString(event)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	return b.String()
}

// ParseLine reads a console line written by Line. It reports false for any other line
// (kernel messages, the agent's log). A field without '=' is kept with an empty value.
func ParseLine(line string) (event string, fields map[string]string, ok bool) {
	rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), ConsolePrefix)
	if !ok {
		return "", nil, false
	}
	words := strings.Fields(rest)
	if len(words) == 0 {
		return "", nil, false
	}
	fields = map[string]string{}
	for _, w := range words[1:] {
		k, v, _ := strings.Cut(w, "=")
		fields[k] = v
	}
	return words[0], fields, true
}
