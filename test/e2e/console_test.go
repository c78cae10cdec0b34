package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Bounds of the browser test.
const (
	// browserTimeout bounds the whole drive of the page.
	browserTimeout = 2 * time.Minute
	// minScreenshot is the least a screenshot of a filled page weighs; a blank page of
	// this size is about a tenth of it.
	minScreenshot = 20 << 10
)

// startConsole runs `umbra console` for the mesh's admin and returns its URL.
func startConsole(t *testing.T, m *mesh) string {
	t.Helper()
	p := start(t, bins.umbra, "console", "--admin", m.q.Admin)
	line := p.waitFor(t, "console http://", readyTimeout)
	return strings.TrimSpace(strings.TrimPrefix(line, "console "))
}

// TestConsoleInTheBrowser drives the console with headless Chromium: the fleet page shows
// the hosting drone online with its link's round trip and loss, the mesh page router1,
// deleting the dial policy on the services page ends a running circuit and its
// circuit-closed event appears on the events page; the page logs no JavaScript error,
// and a screenshot is kept.
func TestConsoleInTheBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed; the console is tested in it. Run scripts/setup-deps.sh (as root it installs chromium; `make test` runs it)")
	}
	m := startMesh(t)
	listen, _, _ := m.echoFleet(t)
	circuit := dialGreeted(t, listen, "drone1") // held open until the page deletes its policy
	url := startConsole(t, m)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 720))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, browserTimeout)
	defer cancelTimeout()
	if err := chromedp.Do(ctx); err != nil { // start the browser and its tab
		t.Fatalf("start chromium: %v", err)
	}

	var mu sync.Mutex
	var jsErrors []string
	consoleCtx, stopConsole := context.WithCancel(ctx)
	defer stopConsole()
	messages := chromedp.Console(consoleCtx)
	go func() {
		for msg, err := range messages {
			if err != nil {
				return
			}
			if msg.Type == chromedp.ConsoleError || msg.Type == chromedp.ConsoleException {
				mu.Lock()
				jsErrors = append(jsErrors, msg.Text)
				mu.Unlock()
			}
		}
	}()
	// Confirm every dialog the page opens (a deletion asks first).
	dialogs := chromedp.Events(consoleCtx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			go chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
				return err
			}))
		}
	}()

	steps := []struct {
		what   string
		action chromedp.Action[chromedp.Void]
	}{
		{"open the console", chromedp.Navigate(url)},
		{"the fleet page shows drone1 online", chromedp.WaitVisible(`#fleet-table tr[data-name="drone1"] td.online`)},
		{"the fleet page shows drone1's link round trip and loss, as its router reports them", chromedp.Poll[chromedp.Void](
			`((document.querySelector('#fleet-table tr[data-name="drone1"] td.link-rtt') || {}).textContent || "").endsWith(" ms") &&
			 ((document.querySelector('#fleet-table tr[data-name="drone1"] td.link-loss') || {}).textContent || "").endsWith(" %")`,
			chromedp.WithPollingInterval(200*time.Millisecond))},
		{"open the mesh page", chromedp.Click(`button[data-page="mesh"]`)},
		{"the mesh page shows router1 online", chromedp.WaitVisible(`#router-table tr[data-name="router1"] td.online`)},
		{"open the services page", chromedp.Click(`button[data-page="services"]`)},
		{"delete the dial policy", chromedp.Click(`#policy-table tr[data-name="d"] button.danger`)},
		{"open the events page", chromedp.Click(`button[data-page="events"]`)},
		{"the events page shows the circuit closed", chromedp.WaitVisible(`#event-list li[data-type="circuit-closed"]`)},
	}
	for _, s := range steps {
		if err := chromedp.Do(ctx, s.action); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.TempDir(), "console-events.png")
	if err := os.WriteFile(path, shot, 0o600); err != nil {
		t.Fatal(err)
	}
	if len(shot) < minScreenshot {
		t.Errorf("screenshot %s is %d bytes, want at least %d for a filled page", path, len(shot), minScreenshot)
	}
	// The policy is gone, and the circuit it allowed ended.
	if find(listJSON(t, m.env, "service-policies"), "d") != nil {
		t.Errorf("service-policy d still listed after the page deleted it")
	}
	circuit.SetReadDeadline(time.Now().Add(commandTimeout))
	if _, err := io.ReadAll(circuit); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Errorf("the held circuit after its policy was deleted: %v, want it closed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(jsErrors) > 0 {
		t.Errorf("the page logged JavaScript errors: %q", jsErrors)
	}
}

// TestConsoleHoldsNoKeyAndServesOnlyItsOwnPage: nothing the console serves carries a key
// or a certificate, a request naming another Host is refused (DNS rebinding), and a
// change from anywhere but its own page is refused.
func TestConsoleHoldsNoKeyAndServesOnlyItsOwnPage(t *testing.T) {
	m := startMesh(t)
	m.enroll("drone1", "drone")
	url := startConsole(t, m)
	for _, path := range []string{"", "app.js", "api/identities", "api/routers", "api/services"} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.Contains(string(body), "-----BEGIN") || strings.Contains(string(body), "PRIVATE") {
			t.Errorf("GET /%s: %s, %d bytes; want 200 and no PEM block or key", path, resp.Status, len(body))
		}
	}
	refusals := []struct {
		name, method, path, host, origin string
	}{
		{"another-host", http.MethodGet, "api/identities", "rebind.example:80", ""},
		{"delete-without-origin", http.MethodDelete, "api/identities/drone1", "", ""},
		{"delete-from-another-origin", http.MethodDelete, "api/identities/drone1", "", "http://evil.example"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, url+tt.path, nil)
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
				req.Header.Set("X-Umbra-Console", "1")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s: %s, want 403", tt.method, tt.path, resp.Status)
			}
		})
	}
	if find(listJSON(t, m.env, "identities"), "drone1") == nil {
		t.Errorf("a refused request deleted drone1")
	}
}
