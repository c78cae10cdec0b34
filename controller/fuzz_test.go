package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/api"
)

// FuzzCreateBody sends arbitrary bodies to every create endpoint: the answer is a 201 or
// a 4xx, never a 5xx, and a refused body changes nothing. What a 201 created is deleted
// again, so the store (and the dump each input compares) stays the seed's size however
// long the fuzzing runs.
func FuzzCreateBody(f *testing.F) {
	tc := startController(f)
	f.Add(uint8(0), []byte(`{"name":"drone1","attributes":["drone"]}`))
	f.Add(uint8(2), []byte(`{"name":"mav","host":"udp:127.0.0.1:14550"}`))
	f.Add(uint8(3), []byte(`{"name":"p","type":"dial","identities":["#all"],"services":["@mav"]}`))
	f.Add(uint8(4), []byte(`{"name":"e","identities":["#all"],"routers":["#all"]}`))
	f.Add(uint8(1), []byte(`{"name":`))
	f.Fuzz(func(t *testing.T, k uint8, body []byte) {
		kind := store.Kinds[int(k)%len(store.Kinds)]
		before := tc.dump(t)
		r := httptest.NewRequest(http.MethodPost, "/v1/"+string(kind), bytes.NewReader(body))
		r.SetPathValue("kind", string(kind))
		w := httptest.NewRecorder()
		tc.serveCreate(w, r)
		switch {
		case w.Code >= 500:
			t.Fatalf("POST %s %q: got %d %s, want 201 or 4xx", kind, body, w.Code, w.Body)
		case w.Code != http.StatusCreated && tc.dump(t) != before:
			t.Fatalf("POST %s %q: refused with %d but the store changed", kind, body, w.Code)
		case w.Code == http.StatusCreated:
			var out api.Created
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatalf("POST %s %q: got 201 with %q, want an api.Created", kind, body, w.Body)
			}
			del := store.Command{Op: store.OpDelete, Kind: kind, Name: out.Name, At: tc.clock.Now()}
			if err := tc.Store().Apply(context.Background(), del); err != nil {
				t.Fatalf("delete %s %q after the create: %v", kind, out.Name, err)
			}
		}
	})
}

// FuzzEnrollBody sends arbitrary bodies to the enrollment endpoint: nothing but a genuine
// token enrolls, nothing answers 5xx, and the store never changes.
func FuzzEnrollBody(f *testing.F) {
	tc := startController(f)
	key, _ := newTestKey()
	tok := tc.createIdentity(f, "seed", false).JWT
	f.Add(enrollBody(nil, "x"+tok, csrPEM(nil, key)))
	f.Add([]byte(`{"token":"a.b.c","csr":""}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, body []byte) {
		before := tc.dump(t)
		r := httptest.NewRequest(http.MethodPost, "/v1/enroll", bytes.NewReader(body))
		w := httptest.NewRecorder()
		tc.serveEnroll(w, r)
		if w.Code == http.StatusOK || w.Code >= 500 {
			t.Fatalf("enroll %q: got %d %s, want a 4xx refusal", body, w.Code, w.Body)
		}
		if tc.dump(t) != before {
			t.Fatalf("enroll %q: refused but the store changed", body)
		}
	})
}

// FuzzParseCSR: the CSR parser never panics and accepts only self-consistent P-256 CSRs.
func FuzzParseCSR(f *testing.F) {
	key, _ := newTestKey()
	f.Add(csrPEM(nil, key))
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
	f.Fuzz(func(t *testing.T, s string) {
		csr, err := parseCSR(s)
		if err == nil && csr.CheckSignature() != nil {
			t.Fatalf("accepted a CSR whose signature does not verify")
		}
	})
}

// FuzzJoinBody sends arbitrary bodies to the controller join endpoint: nothing but a
// genuine token joins, nothing answers 5xx, and the store never changes.
func FuzzJoinBody(f *testing.F) {
	tc := startController(f)
	created, err := tc.api.Create(context.Background(), "controllers", api.CreateController{Name: "seed"})
	if err != nil {
		f.Fatal(err)
	}
	key, _ := newTestKey()
	f.Add([]byte(`{"token":"x` + created.JWT + `","csr":` + jsonString(csrPEM(nil, key)) + `,"address":"127.0.0.1:1"}`))
	f.Add([]byte(`{"token":"` + created.JWT + `","csr":"","address":"nohost"}`))
	f.Add([]byte(`{"token":"a.b.c","csr":"","address":""}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, body []byte) {
		before := tc.dump(t)
		r := httptest.NewRequest(http.MethodPost, "/v1/controllers/join", bytes.NewReader(body))
		w := httptest.NewRecorder()
		tc.serveJoin(w, r)
		if w.Code == http.StatusOK || w.Code >= 500 {
			t.Fatalf("join %q: got %d %s, want a 4xx refusal", body, w.Code, w.Body)
		}
		if tc.dump(t) != before {
			t.Fatalf("join %q: refused but the store changed", body)
		}
	})
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// FuzzReadBackup: a backup file of any content never panics restore's reader, and what
// it accepts holds both of a backup's files.
func FuzzReadBackup(f *testing.F) {
	f.Add([]byte("umbra.db"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "backup")
		os.WriteFile(path, data, 0o600)
		files, err := readBackup(path)
		if err == nil && (files[backupStore] == nil || files[backupCA] == nil) {
			t.Fatalf("accepted a backup without both files: %v", files)
		}
	})
}
