package console_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rexec/rexec/console"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/webapi"
)

// get sends a GET to url with the headers (name, value, ...) and returns
// the answer, its body read.
func get(t *testing.T, url string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The page and its files need no key, and come with the headers that keep
// them safe: a strict Content-Security-Policy, no framing, no cache for the
// page; the files are checked by their ETag.
func TestConsoleFiles(t *testing.T) {
	s := testserver.Start(t, node.Config{Web: webapi.Config{Token: admin, Console: console.New()}})
	resp, body := get(t, s.URL+"/")
	h := resp.Header
	if resp.StatusCode != 200 || !strings.Contains(body, `<script src="console/app.js" defer></script>`) ||
		h.Get("Content-Security-Policy") != console.ContentSecurityPolicy || h.Get("X-Frame-Options") != "DENY" ||
		h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" ||
		!strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %v", resp.StatusCode, h)
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Error("the page has an inline script or style, or loads something from elsewhere")
	}
	resp, _ = get(t, s.URL+"/console/app.js")
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || etag == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET /console/app.js: %d %v", resp.StatusCode, resp.Header)
	}
	for _, match := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		if resp, _ := get(t, s.URL+"/console/app.js", "If-None-Match", match); resp.StatusCode != 304 {
			t.Errorf("If-None-Match: %s: %d", match, resp.StatusCode)
		}
	}
	if resp, _ := get(t, s.URL+"/console/app.js", "If-None-Match", `"other"`); resp.StatusCode != 200 {
		t.Errorf("another ETag: %d", resp.StatusCode)
	}
	for _, path := range []string{"/console/nope.js", "/console/", "/console/index.html", "/console/static/app.js", "/console/..%2fconsole.go"} {
		if resp, _ := get(t, s.URL+path, "Authorization", "Bearer "+admin); resp.StatusCode != 404 ||
			resp.Header.Get("Content-Security-Policy") == "" && strings.HasPrefix(path, "/console/") && path != "/console/" {
			t.Errorf("GET %s: %d %v, want 404 with the page's headers", path, resp.StatusCode, resp.Header)
		}
	}
	// The API still needs the key; the page's POST is refused without it.
	if resp, _ := get(t, s.URL+"/scripts/v1/scripts"); resp.StatusCode != 401 {
		t.Errorf("the API without a key: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", s.URL+"/", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("POST /: %v %v", resp.StatusCode, err)
	}
}

// A link on another site may open the page (a top-level navigation), but a
// page of another site may not call the API, nor load the page's files as
// a script; and a name the server does not answer to gets nothing.
func TestConsoleSiteRules(t *testing.T) {
	s := testserver.Start(t, node.Config{Web: webapi.Config{Token: admin, Console: console.New()}})
	nav := []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
	for _, c := range []struct {
		path    string
		headers []string
		want    int
	}{
		{"/", nav, 200},
		{"/console/app.js", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "script"}, 403},
		{"/", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "cors", "Origin", "https://evil.example"}, 403},
		{"/scripts/v1/scripts", append([]string{"Authorization", "Bearer " + admin}, nav...), 403},
		{"/", []string{"Host", "evil.example"}, 403},
		{"/", append([]string{"Host", "evil.example"}, nav...), 403},
		{"/", []string{"Origin", s.URL}, 200},
		{"/console/./app.js", nil, 401}, // only clean paths need no key
		{"/console/..%2f..%2fhealthz", nil, 401},
	} {
		if resp, body := get(t, s.URL+c.path, c.headers...); resp.StatusCode != c.want {
			t.Errorf("GET %s %v: %d %s, want %d", c.path, c.headers, resp.StatusCode, body, c.want)
		}
	}
}

// Behind a reverse proxy that keeps its path prefix: --base-path serves
// the console and the API under it too; without the console, / is not
// there.
func TestConsoleBasePath(t *testing.T) {
	s := testserver.Start(t, node.Config{Web: webapi.Config{Token: admin, Console: console.New(), BasePath: "/rexec"}})
	if resp, _ := get(t, s.URL+"/rexec"); resp.StatusCode != 301 || resp.Header.Get("Location") != "/rexec/" {
		t.Errorf("GET /rexec: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, path := range []string{"/rexec/", "/rexec/console/app.css", "/", "/console/app.css"} {
		if resp, _ := get(t, s.URL+path); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
	if resp, _ := get(t, s.URL+"/rexec/healthz"); resp.StatusCode != 200 {
		t.Errorf("GET /rexec/healthz: %d", resp.StatusCode)
	}
	if resp, _ := get(t, s.URL+"/rexecx/healthz"); resp.StatusCode == 200 {
		t.Error("a path that only starts like the prefix was served")
	}
	if resp, _ := get(t, s.URL+"/rexec/scripts/v1/status", "Authorization", "Bearer "+admin); resp.StatusCode != 404 {
		t.Errorf("the API under the prefix: %d, want 404 (no scripts)", resp.StatusCode)
	}

	bare := testserver.Start(t, node.Config{})
	if resp, _ := get(t, bare.URL+"/"); resp.StatusCode != 501 {
		t.Errorf("GET / without the console: %d", resp.StatusCode)
	}
}
