// Package reporttest opens a report page in the real headless Chromium
// (Debian's package chromium) for the tests of sink/report and of
// `kubesift run`: it drives the browser over the DevTools protocol on
// --remote-debugging-pipe with only the standard library, and returns
// what a person would see — console errors, the charts drawn, the load
// time Chromium measured — with a screenshot written under the test's
// temporary directory.
package reporttest

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kubesift/kubesift/internal/testenv"
)

// Chromium returns the browser's path. Without it the test skips, saying
// how to install it — or fails under KUBESIFT_REQUIRE_REAL=1, where
// hack/test.sh has installed it.
func Chromium(t testing.TB) string {
	t.Helper()
	testenv.Short(t)
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium is not installed (apt-get install -y chromium; hack/test.sh installs it)"
	testenv.Missing(t, msg)
	return ""
}

// Page is what Chromium made of a page.
type Page struct {
	// LoadMillis is the navigation timing's loadEventEnd: from the start
	// of navigation to the end of the load event, parsing, style, layout
	// included.
	LoadMillis float64
	// Errors are the console's errors, uncaught exceptions and the
	// browser's error log entries (a blocked load is one).
	Errors []string
	// Charts maps each element with data-chart to the marks it holds
	// (elements of class bar, table rows of class row, score rings).
	Charts map[string]int
	// Empty lists the data-chart-empty markers (a chart with no data).
	Empty []string
	// Elements counts the img, script, iframe, object and embed elements
	// of the rendered DOM.
	Elements map[string]int
	// Screenshot is the path of a full-page PNG.
	Screenshot string
}

// inspect is evaluated in the page once it has loaded.
const inspect = `(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const charts = {};
  for (const el of document.querySelectorAll('[data-chart]')) {
    charts[el.dataset.chart] = el.querySelectorAll('.bar, tr.row, .score').length;
  }
  const empty = [...document.querySelectorAll('[data-chart-empty]')].map(e => e.dataset.chartEmpty);
  const elements = {};
  for (const tag of ['img', 'script', 'iframe', 'object', 'embed']) elements[tag] = document.getElementsByTagName(tag).length;
  return {load: nav ? nav.loadEventEnd : -1, charts, empty, elements};
})()`

// Open loads the file path in headless Chromium and inspects it.
func Open(t testing.TB, path string) *Page {
	t.Helper()
	bin := Chromium(t)
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := start(t, ctx, bin)
	defer c.close()
	p, err := c.open(ctx, "file://"+abs, filepath.Join(t.TempDir(), "report.png"))
	if err != nil {
		t.Fatalf("chromium: %v (stderr: %s)", err, c.stderr.String())
	}
	return p
}

// cdp is one browser on a DevTools pipe.
type cdp struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	stderr *testenv.Buffer
	mu     sync.Mutex
	nextID int
	wait   map[int]chan message
	events chan message
	done   chan struct{}
}

type message struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

func start(t testing.TB, ctx context.Context, bin string) *cdp {
	t.Helper()
	// Chromium reads commands from fd 3 and writes answers to fd 4.
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ansR, ansW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &cdp{in: cmdW, stderr: &testenv.Buffer{}, wait: map[int]chan message{}, events: make(chan message, 1024), done: make(chan struct{})}
	c.cmd = exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-pipe", "about:blank")
	c.cmd.ExtraFiles = []*os.File{cmdR, ansW}
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	cmdR.Close()
	ansW.Close()
	go c.read(ansR)
	return c
}

// read dispatches answers to their callers and events to the channel;
// events beyond its room are dropped, as only a page's first errors
// matter.
func (c *cdp) read(r io.ReadCloser) {
	defer close(c.done)
	defer r.Close()
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		b, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var m message
		if json.Unmarshal(b[:len(b)-1], &m) != nil {
			continue
		}
		if m.ID != 0 {
			c.mu.Lock()
			ch := c.wait[m.ID]
			delete(c.wait, m.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		select {
		case c.events <- m:
		default:
		}
	}
}

// call sends one command and waits for its answer.
func (c *cdp) call(ctx context.Context, session, method string, params any, result any) error {
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	ch := make(chan message, 1)
	c.wait[id] = ch
	c.mu.Unlock()
	p, err := json.Marshal(params)
	if err != nil {
		return err
	}
	b, err := json.Marshal(message{ID: id, Method: method, SessionID: session, Params: p})
	if err != nil {
		return err
	}
	if _, err := c.in.Write(append(b, 0)); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-c.done:
		return fmt.Errorf("%s: the browser exited", method)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

func (c *cdp) open(ctx context.Context, url, shot string) (*Page, error) {
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := c.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		return nil, err
	}
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	if err := c.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached); err != nil {
		return nil, err
	}
	s := attached.SessionID
	for _, m := range []string{"Runtime.enable", "Log.enable", "Page.enable"} {
		if err := c.call(ctx, s, m, struct{}{}, nil); err != nil {
			return nil, err
		}
	}
	if err := c.call(ctx, s, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		return nil, err
	}
	if err := c.call(ctx, s, "Page.navigate", map[string]any{"url": url}, nil); err != nil {
		return nil, err
	}
	p := &Page{}
	if err := c.awaitLoad(ctx, s, p); err != nil {
		return nil, err
	}
	var ev struct {
		Result struct {
			Value struct {
				Load     float64        `json:"load"`
				Charts   map[string]int `json:"charts"`
				Empty    []string       `json:"empty"`
				Elements map[string]int `json:"elements"`
			} `json:"value"`
		} `json:"result"`
		Exception json.RawMessage `json:"exceptionDetails"`
	}
	// loadEventEnd is set once the load event's handlers have returned,
	// just after Page.loadEventFired: ask until it is.
	for ev.Result.Value.Load <= 0 {
		if err := c.call(ctx, s, "Runtime.evaluate", map[string]any{"expression": inspect, "returnByValue": true}, &ev); err != nil {
			return nil, err
		}
		if ev.Exception != nil {
			return nil, fmt.Errorf("inspecting the page: %s", ev.Exception)
		}
		if ctx.Err() != nil {
			return nil, errors.New("navigation timing never reported the end of the load event")
		}
	}
	v := ev.Result.Value
	p.LoadMillis, p.Charts, p.Empty, p.Elements = v.Load, v.Charts, v.Empty, v.Elements
	var png struct {
		Data string `json:"data"`
	}
	if err := c.call(ctx, s, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &png); err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(png.Data)
	if err != nil {
		return nil, fmt.Errorf("screenshot: %w", err)
	}
	if err := os.WriteFile(shot, b, 0o600); err != nil {
		return nil, err
	}
	p.Screenshot = shot
	c.drainErrors(s, p)
	return p, nil
}

// awaitLoad waits for the page's load event, noting errors on the way.
func (c *cdp) awaitLoad(ctx context.Context, session string, p *Page) error {
	for {
		select {
		case m := <-c.events:
			if m.SessionID == session && m.Method == "Page.loadEventFired" {
				return nil
			}
			noteError(m, session, p)
		case <-c.done:
			return errors.New("the browser exited before the page loaded")
		case <-ctx.Done():
			return fmt.Errorf("waiting for the page to load: %w", ctx.Err())
		}
	}
}

// drainErrors notes the errors among the events received so far.
func (c *cdp) drainErrors(session string, p *Page) {
	for {
		select {
		case m := <-c.events:
			noteError(m, session, p)
		default:
			return
		}
	}
}

func noteError(m message, session string, p *Page) {
	if m.SessionID != session {
		return
	}
	switch m.Method {
	case "Runtime.exceptionThrown":
		p.Errors = append(p.Errors, "exception: "+string(m.Params))
	case "Runtime.consoleAPICalled":
		var e struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(m.Params, &e) == nil && (e.Type == "error" || e.Type == "assert") {
			p.Errors = append(p.Errors, "console: "+string(m.Params))
		}
	case "Log.entryAdded":
		var e struct {
			Entry struct {
				Level string `json:"level"`
			} `json:"entry"`
		}
		if json.Unmarshal(m.Params, &e) == nil && e.Entry.Level == "error" {
			p.Errors = append(p.Errors, "log: "+string(m.Params))
		}
	}
}

// close asks the browser to exit and waits for it.
func (c *cdp) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.call(ctx, "", "Browser.close", struct{}{}, nil)
	c.in.Close()
	select {
	case <-c.done:
	case <-ctx.Done():
		_ = c.cmd.Process.Kill()
	}
	_ = c.cmd.Wait()
}
