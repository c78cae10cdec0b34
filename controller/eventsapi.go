package controller

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"umbra/controller/events"
	"umbra/internal/api"
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
