package console_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rexec/rexec/console"
	"github.com/rexec/rexec/internal/testhttp"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/webapi"
)

// nginxPath is nginx's path; without it the test skips, except in CI,
// where .ci/run installs Debian's nginx-light.
func nginxPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no nginx: .ci/run installs Debian's nginx-light package")
	}
	t.Skip("no nginx on this machine (apt-get install nginx-light)")
	return ""
}

// freePort is a port of 127.0.0.1 that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startNginx runs nginx in the foreground with the server block conf, in a
// folder of its own, until the test ends; it returns nginx's URL.
func startNginx(t *testing.T, server string) string {
	t.Helper()
	bin := nginxPath(t)
	dir := t.TempDir()
	port := freePort(t)
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]d;
		%[3]s
	}
}
`, dir, port, server)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if b, _ := os.ReadFile(filepath.Join(dir, "error.log")); t.Failed() && len(b) > 0 {
			t.Logf("nginx's error log:\n%s", b)
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Behind a real nginx, under a path prefix, both ways a proxy does it (one
// that strips the prefix, one that passes it on, with --base-path): a
// stream of POST /process, a run's output as events and the event feed pass
// through as they happen, not when they end, with their heartbeats; and the
// console works there, in a browser.
func TestBehindNginx(t *testing.T) {
	s := testserver.Start(t, node.Config{
		Scripts: testserver.Exectab(t,
			`slow /bin/sh -c 'echo first; sleep 3; echo second'`),
		EventReplay: 100, EventQueue: 100,
		Web: webapi.Config{Token: admin, Console: console.New(), BasePath: "/kept", Heartbeat: time.Second},
	})
	upstream := strings.TrimPrefix(s.URL, "http://")
	proxy := startNginx(t, fmt.Sprintf(`
		location /rexec/ {
			proxy_pass http://%[1]s/;
			proxy_set_header Host $http_host; # the page's own origin, for the Origin check
			proxy_http_version 1.1;
			proxy_buffering off;
			proxy_read_timeout 30s;
		}
		location /kept/ {
			proxy_pass http://%[1]s;
			proxy_set_header Host $http_host;
			proxy_http_version 1.1;
			proxy_buffering off;
			proxy_read_timeout 30s;
		}`, upstream))

	for _, prefix := range []string{"/rexec", "/kept"} {
		t.Run(strings.TrimPrefix(prefix, "/"), func(t *testing.T) {
			base := proxy + prefix

			// An attached run: its first line before its end.
			req, _ := http.NewRequest("POST", base+"/process", strings.NewReader(`{"alias":"through-`+prefix[1:]+`","cmd":"/bin/sh","args":["-c","echo one; sleep 2; echo two"]}`))
			req.Header.Set("Authorization", "Bearer "+admin)
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			if err != nil || line != "one\n" || time.Since(start) > 1500*time.Millisecond {
				t.Fatalf("the first line of a stream through nginx: %q %v after %v", line, err, time.Since(start))
			}
			rest, _ := br.ReadString('\n')
			resp.Body.Close()
			if rest != "two\n" {
				t.Fatalf("the second line: %q", rest)
			}

			// A run's output as events, and the feed: the first event
			// before the run's end, then heartbeats in its silence.
			feed := sseOpen(t, base+"/scripts/v1/events", "")
			id := postRun(t, base, "slow")
			out := sseOpen(t, base+"/scripts/v1/output/"+id+"?follow=1", "")
			start = time.Now()
			if ev, data, _ := out.next(t); ev != "output" || data != `"first\n"` || time.Since(start) > 1500*time.Millisecond {
				t.Fatalf("the first output event through nginx: %s %s after %v", ev, data, time.Since(start))
			}
			if ev, _, pings := out.next(t); ev != "output" || pings < 1 {
				t.Errorf("no heartbeat through nginx in the run's silence (%s after %d)", ev, pings)
			}
			if ev, _, _ := feed.next(t); ev != "queued" {
				t.Errorf("the feed through nginx: %s", ev)
			}
		})
	}

	// The console, in a browser, through the proxy that strips its prefix.
	ctx := browser(t)
	signIn(t, ctx, proxy+"/rexec/", admin)
	run(t, ctx, chromedp.WaitVisible(chromedp.ID("run-slow")), chromedp.Click(chromedp.CSS(`#run-slow button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("output")))
	waitFor(t, ctx, "the first line, live", `document.getElementById('output').textContent.includes('first') && document.querySelector('h2 .state').textContent === 'running'`)
	waitFor(t, ctx, "the run's end", `document.querySelector('h2 .state').textContent === 'exit 0' && document.getElementById('output').textContent.includes('second')`)
	if got := eval[string](t, ctx, `location.pathname`); got != "/rexec/" {
		t.Errorf("the page's path: %s", got)
	}
}

// sse is an open event stream.
type sse struct{ br *bufio.Reader }

func sseOpen(t *testing.T, url, last string) *sse {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return &sse{bufio.NewReader(resp.Body)}
}

// next is the next event's type and data, and how many heartbeat comments
// came before it.
func (s *sse) next(t *testing.T) (event, data string, pings int) {
	t.Helper()
	e := testhttp.ReadEvent(t, s.br)
	return e.Event, e.Data, e.Pings
}

// postRun starts a detached run of script through base, and returns its id.
func postRun(t *testing.T, base, script string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/scripts/v1/run", strings.NewReader(`{"name":"`+script+`"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || a.ID == "" {
		t.Fatalf("POST %s/scripts/v1/run: %d %v", base, resp.StatusCode, err)
	}
	return a.ID
}
