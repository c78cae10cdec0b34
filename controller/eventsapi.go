package controller

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"
	"unicode"

	"github.com/umbranet/umbra/controller/events"
	"github.com/umbranet/umbra/internal/api"
)

// serveEvents answers GET /v1/events as JSON lines, one event each, oldest first:
// ?since=DURATION picks how far back to start (everything remembered when absent), and
// ?follow=true keeps the answer open, writing each new event as it happens, until the
// client goes or the controller stops.
func (c *Controller) serveEvents(w http.ResponseWriter, r *http.Request) {
	var from time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("since %q: want a duration such as 10m", v))
			return
		}
		from = c.cfg.Now().Add(-d)
	}
	follow, err := strconv.ParseBool(r.URL.Query().Get("follow"))
	if r.URL.Query().Get("follow") == "" {
		follow, err = false, nil
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "follow: want true or false")
		return
	}
	w.Header().Set("Content-Type", api.ContentTypeEvents)
	enc := json.NewEncoder(w)
	if !follow {
		for _, e := range c.events.Since(from) {
			enc.Encode(e)
		}
		return
	}
	past, next, stop := c.events.Follow(from)
	defer stop()
	flusher, _ := w.(http.Flusher)
	send := func(e events.Event) bool {
		if enc.Encode(e) != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	for _, e := range past {
		if !send(e) {
			return
		}
	}
	if flusher != nil {
		flusher.Flush() // the headers, even with nothing to send yet
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-next:
			if !ok || !send(e) {
				return
			}
		}
	}
}

// toolRE is what an audited tool's name may be.
var toolRE = regexp.MustCompile(fmt.Sprintf(`^[A-Za-z0-9_-]{1,%d}$`, api.MaxAuditField))

// serveAudit records POST /v1/events (an api.AuditEvent) as an mcp-call event naming the
// caller; the body is checked strictly and bounded, so the trail holds no free text.
func (c *Controller) serveAudit(w http.ResponseWriter, r *http.Request) {
	var req api.AuditEvent
	if !decode(w, r, &req) {
		return
	}
	if err := checkAudit(req); err != nil {
		writeCodedError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	caller := callerOf(r)
	c.event(events.Event{Type: events.MCPCall, Name: req.Tool, Identity: caller.Name, Client: req.Client, Reason: req.Outcome})
	w.WriteHeader(http.StatusNoContent)
}

// checkAudit refuses an audit event with an unknown outcome, a malformed tool name or a
// client name that is too long or not printable.
func checkAudit(e api.AuditEvent) error {
	switch e.Outcome {
	case api.OutcomeOK, api.OutcomeError, api.OutcomeRefused:
	default:
		return fmt.Errorf("outcome %q: want %s, %s or %s", e.Outcome, api.OutcomeOK, api.OutcomeError, api.OutcomeRefused)
	}
	if !toolRE.MatchString(e.Tool) {
		return fmt.Errorf("tool %q: want 1 to %d letters, digits, '_' or '-'", e.Tool, api.MaxAuditField)
	}
	if len(e.Client) > api.MaxAuditField {
		return fmt.Errorf("client: at most %d bytes", api.MaxAuditField)
	}
	for _, ch := range e.Client {
		if !unicode.IsPrint(ch) {
			return fmt.Errorf("client %q: printable text only", e.Client)
		}
	}
	return nil
}
