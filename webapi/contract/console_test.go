package contract_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// contractConsole walks the web console (GET / and GET /console/{file}) on
// s (a token, and the console), bare (no console, no token) and dark (a
// token, no console).
func contractConsole(t *testing.T, c *contract, s, bare, dark *walkServer) {
	page := func(t *testing.T, base string, status int, header ...string) *exchange {
		t.Helper()
		return c.do(t, base, call{op: "GET /", path: "/", header: header, valid: status < 300}, status)
	}
	file := func(t *testing.T, base, path string, status int, header ...string) *exchange {
		t.Helper()
		return c.do(t, base, call{op: "GET /console/{file}", path: path, header: header, valid: status < 400}, status)
	}

	// The page and its files need no key, on a server with a token.
	if ex := page(t, s.url, 200); !strings.Contains(string(ex.body), "console/app.js") {
		t.Errorf("the page does not load its script: %.300s", ex.body)
	}
	// A link on another site opens the page: a top-level navigation, whose
	// answer that site never reads. Nothing else of another site passes,
	// nor a foreign Host.
	nav := []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
	page(t, s.url, 200, nav...)
	page(t, s.url, 200, append([]string{"Origin", "http://attacker.example"}, nav...)...)
	page(t, s.url, 403, "Sec-Fetch-Site", "cross-site")
	page(t, s.url, 403, "Origin", "http://attacker.example", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "iframe")
	page(t, s.url, 403, append([]string{"Host", "attacker.example"}, nav...)...)
	file(t, s.url, "/console/app.js", 403, append([]string{"Origin", "http://attacker.example"}, nav...)...)

	// The files: kept by the browser, and checked each time.
	for _, f := range []struct{ name, ctype string }{
		{"app.js", "text/javascript; charset=utf-8"},
		{"app.css", "text/css; charset=utf-8"},
	} {
		ex := file(t, s.url, "/console/"+f.name, 200)
		etag := ex.head.Get("ETag")
		if ex.head.Get("Content-Type") != f.ctype || len(ex.body) == 0 {
			t.Errorf("%s: %v, %d bytes", f.name, ex.head, len(ex.body))
		}
		if ex := file(t, s.url, "/console/"+f.name, 304, "If-None-Match", etag); len(ex.body) != 0 || ex.head.Get("ETag") != etag {
			t.Errorf("%s not modified: %v %q", f.name, ex.head, ex.body)
		}
		file(t, s.url, "/console/"+f.name, 200, "If-None-Match", `"0000000000000000"`)
		file(t, s.url, "/console/"+f.name, 200, "Authorization", "Bearer "+adminToken) // a key does no harm
	}
	for _, name := range []string{"nosuch.js", "index.html", "app.js.map"} {
		if ex := file(t, s.url, "/console/"+name, 404); string(ex.body) != "404 page not found\n" {
			t.Errorf("/console/%s: %q", name, ex.body)
		}
	}
	// Paths under /console/ that the path template does not match: 404
	// too; /console itself is redirected there.
	for _, p := range []string{"/console/", "/console/static/app.js", "/console/a/b"} {
		if code, _, body := request(t, s.url, "GET", p, ""); code != 404 || body != "404 page not found\n" {
			t.Errorf("GET %s: %d %q", p, code, body)
		}
	}
	req, _ := http.NewRequest("GET", s.url+"/console", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if resp, err := walkClient.Do(req); err != nil {
		t.Error(err)
	} else if resp.Body.Close(); resp.StatusCode != 307 || resp.Header.Get("Location") != "/console/" {
		t.Errorf("GET /console: %d %v", resp.StatusCode, resp.Header)
	}
	// Only GET and HEAD need no key: another method without one is 401.
	c.do(t, s.url, call{op: "GET /", method: "POST", path: "/"}, 401)

	// A server without the console (--no-console): / and /console/... are
	// unknown paths, 501 once the checks have passed; with a token, 401
	// before.
	page(t, bare.url, 501)
	file(t, bare.url, "/console/app.js", 501)
	page(t, dark.url, 401)
	file(t, dark.url, "/console/app.js", 401)
	c.do(t, dark.url, call{op: "GET /", path: "/", key: adminToken}, 501)
	c.do(t, dark.url, call{op: "GET /console/{file}", path: "/console/app.css", key: adminToken}, 501)
	// Nor is a navigation from another site let through: there is no page.
	if ex := page(t, dark.url, 403, nav...); ex.json()["error"] == "" {
		t.Errorf("a navigation to a server without the console: %s", ex.body)
	}
}

// outputEvents reads an output event stream (GET /scripts/v1/output/{id}
// as Server-Sent Events) until an event that is not output, validating every
// one, and returns the text of the output events, the id of the last one
// ("" without any) and the event that ended them, with its data.
func outputEvents(t *testing.T, c *contract, ex *exchange, br *bufio.Reader) (text, lastID string, last sseFields, data map[string]any) {
	t.Helper()
	var b strings.Builder
	for {
		e, d := c.readEvent(t, ex, br)
		if e["event"] != "output" {
			return b.String(), lastID, e, d
		}
		var s string
		if err := json.Unmarshal([]byte(e["data"].(string)), &s); err != nil {
			t.Fatalf("%s: output event data %q: %v", ex.path, e["data"], err)
		}
		b.WriteString(s)
		lastID = e["id"].(string)
	}
}
