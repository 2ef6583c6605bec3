package webapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/internal/testhttp"
	"github.com/rexec/rexec/webapi"
)

// request sends method path to base with the headers given as pairs; "Host"
// sets the Host header. It returns the status, the headers and the body.
func request(t *testing.T, base, method, path, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	return testhttp.Request(t, base, method, path, body, header...)
}

// A page in the user's browser can send requests to a server on 127.0.0.1
// ("simple" ones need no preflight), and read the answers after rebinding a
// name of its own to 127.0.0.1. Every endpoint refuses both, with or
// without a token, before anything runs.
func TestBrowserRequestsAreRefused(t *testing.T) {
	for _, token := range []string{"", "s3cret"} {
		t.Run("token="+token, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "ran")
			s := newDetachedServerToken(t, t.TempDir(), detached.Config{}, token, "-e=TESTCHILD=exit job EXE 0")
			auth := []string{}
			if token != "" {
				auth = []string{"Authorization", "Bearer " + token}
			}
			touch := `{"alias":"csrf","cmd":"touch","args":["` + marker + `"]}`
			endpoints := []struct{ method, path, body string }{
				{"POST", "/process", touch},
				{"GET", "/healthz", ""},
				{"GET", "/readyz", ""},
				{"GET", "/scripts/v1/status", ""},
				{"POST", "/scripts/v1/run", `{"name":"job"}`},
				{"GET", "/scripts/v1/events", ""},
				{"GET", "/scripts/v1/monitor", ""},
				{"GET", "/scripts/v1", ""}, // the Cloud Storage Server's WebSocket API
				{"GET", "/scripts", ""},
				{"GET", "/plugins/v1", ""},
				{"POST", "/plugins/v1/call", `{"component":"p/c","method":"m"}`},
				{"POST", "/plugins/v1/start", `{"component":"p/c"}`},
				{"POST", "/plugins/v1/events", `{"name":"csrf.event"}`},
				{"POST", "/scripts/v1/guest/create", `{"run":true}`},
				{"GET", "/process", ""},
				{"GET", "/process?fleet=1", ""},
				{"GET", "/fleet/v1/machines", ""},
				{"DELETE", "/process/csrf", ""},
				{"GET", "/process/attach", ""}, // interactive runs' WebSocket
				{"GET", "/scripts/v1/scripts", ""},
				{"GET", "/scripts/v1/runs", ""},
				{"GET", "/metrics", ""},
				{"GET", "/openapi.json", ""},
				{"POST", "/api/xmlrpc", "<methodCall><methodName>getAllMachines</methodName></methodCall>"},
				{"GET", "/nowhere", ""},
			}
			refusals := []struct {
				name    string
				headers []string
				code    string
			}{
				{"rebound host", []string{"Host", "attacker.example:8910"}, "forbidden_host"},
				{"rebound host without port", []string{"Host", "attacker.example"}, "forbidden_host"},
				{"a subdomain of localhost lookalike", []string{"Host", "localhost.attacker.example"}, "forbidden_host"},
				{"cross-site origin", []string{"Origin", "http://attacker.example", "Content-Type", "text/plain"}, "forbidden_origin"},
				{"origin of another port", []string{"Origin", "http://127.0.0.1:1"}, "forbidden_origin"},
				{"null origin", []string{"Origin", "null"}, "forbidden_origin"},
				{"Sec-Fetch-Site", []string{"Sec-Fetch-Site", "cross-site"}, "forbidden_origin"},
			}
			for _, ep := range endpoints {
				for _, rf := range refusals {
					t.Run(ep.path+"/"+rf.name, func(t *testing.T) {
						code, h, body := request(t, s.url, ep.method, ep.path, ep.body, append(rf.headers, auth...)...)
						if code != http.StatusForbidden {
							t.Fatalf("status %d, want 403: %s", code, body)
						}
						if h.Get("Content-Type") != "application/json" {
							t.Fatalf("Content-Type %q", h.Get("Content-Type"))
						}
						var e map[string]any
						if err := json.Unmarshal([]byte(body), &e); err != nil || e["error"] == "" {
							t.Fatalf("body %q is not a JSON error", body)
						}
						if strings.HasPrefix(ep.path, "/scripts/v1/") && e["errorcode"] != rf.code {
							t.Fatalf("errorcode %v, want %s", e["errorcode"], rf.code)
						}
					})
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("a refused request ran its command")
			}

			// What clients without a browser send, and the server's own
			// pages, pass.
			port := s.url[strings.LastIndexByte(s.url, ':'):]
			for _, ok := range [][]string{
				{},
				{"Host", "localhost" + port},
				{"Host", "LOCALHOST"},
				{"Host", "console.localhost" + port},
				{"Host", "[::1]" + port},
				{"Host", "10.1.2.3"},
				{"Origin", strings.Replace(s.url, "127.0.0.1", "127.0.0.1", 1)},
				{"Host", "localhost" + port, "Origin", "http://localhost" + port},
				{"Sec-Fetch-Site", "same-origin"},
				{"Sec-Fetch-Site", "none"},
			} {
				code, _, body := request(t, s.url, "GET", "/scripts/v1/status", "", append(ok, auth...)...)
				if code != 200 {
					t.Errorf("headers %q: status %d: %s", ok, code, body)
				}
			}

			// WebSocket: the same rules, before the upgrade.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			h := http.Header{"Origin": {"http://attacker.example"}}
			if token != "" {
				h.Set("Authorization", "Bearer "+token)
			}
			c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/scripts/v1/monitor", &websocket.DialOptions{HTTPHeader: h})
			if err == nil {
				c.CloseNow()
				t.Fatal("a cross-site WebSocket was accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("cross-site WebSocket: %v %v", resp, err)
			}
		})
	}
}

func TestAllowedHostsAndOrigins(t *testing.T) {
	s := newServer(t, serverOpts{cfg: webapi.Config{
		AllowedHosts:   []string{"rexec.example.com", ".internal.example"},
		AllowedOrigins: []string{"https://console.example.com"},
	}})
	for _, tc := range []struct {
		headers []string
		status  int
	}{
		{[]string{"Host", "rexec.example.com"}, 200},
		{[]string{"Host", "REXEC.example.com:8910"}, 200},
		{[]string{"Host", "rexec.example.com."}, 200},
		{[]string{"Host", "internal.example"}, 200},
		{[]string{"Host", "a.b.internal.example"}, 200},
		{[]string{"Host", "other.example.com"}, 403},
		{[]string{"Host", "xinternal.example"}, 403},
		{[]string{"Origin", "https://console.example.com"}, 200},
		{[]string{"Origin", "https://console.example.com", "Sec-Fetch-Site", "cross-site"}, 200},
		{[]string{"Origin", "http://console.example.com"}, 403},
		{[]string{"Origin", "https://console.example.com.attacker.example"}, 403},
	} {
		code, _, body := request(t, s.url, "GET", "/healthz", "", tc.headers...)
		if code != tc.status {
			t.Errorf("%q: status %d, want %d: %s", tc.headers, code, tc.status, body)
		}
	}
	any := newServer(t, serverOpts{cfg: webapi.Config{AllowedHosts: []string{"*"}, AllowedOrigins: []string{"*"}}})
	if code, _, body := request(t, any.url, "GET", "/healthz", "", "Host", "anything.example", "Origin", "http://x.example"); code != 200 {
		t.Fatalf("with * everything passes: %d %s", code, body)
	}
	for _, bad := range [][2][]string{
		{{"http://x.example"}, nil}, {{"x.example/path"}, nil}, {{"x.example:80"}, nil}, {{""}, nil},
		{nil, {"console.example.com"}}, {nil, {"https://console.example.com/app"}},
	} {
		if err := webapi.ValidateSiteRules(bad[0], bad[1]); err == nil {
			t.Errorf("hosts %q origins %q accepted", bad[0], bad[1])
		}
	}
}

func TestAuthorizationHeaderRules(t *testing.T) {
	open := newServer(t, serverOpts{})
	// Without a token, credentials are not looked at: the README's recipe
	// with $REXEC_TOKEN unset sends "Bearer ".
	for _, auth := range []string{"Bearer ", "Bearer", "Bearer unknown", "Basic Zm9vOmJhcg=="} {
		resp, out := open.run(t, fake("noauth", "exit", "0"), "Authorization", auth)
		if resp.StatusCode != 200 {
			t.Errorf("no token, Authorization %q: %d %s", auth, resp.StatusCode, out)
		}
	}
	s := newServer(t, serverOpts{cfg: webapi.Config{Token: "s3cret"}})
	for _, tc := range []struct {
		auth   string
		status int
	}{
		{"bearer s3cret", 200},
		{"BEARER s3cret", 200},
		{"Bearer   s3cret  ", 200},
		{"Bearer ", 401},
		{"Bearers3cret", 401},
		{"Token s3cret", 401},
	} {
		resp, out := s.run(t, fake("auth", "exit", "0"), "Authorization", tc.auth)
		if resp.StatusCode != tc.status {
			t.Errorf("Authorization %q: %d, want %d: %s", tc.auth, resp.StatusCode, tc.status, out)
		}
	}
}

// ?apikey= is for guest keys (WebSocket clients in browsers cannot set
// headers); the admin token in a URL would end up in logs and histories.
func TestAdminTokenIsRefusedInTheURL(t *testing.T) {
	s := newDetachedServerToken(t, t.TempDir(), detached.Config{}, "s3cret", "-e=TESTCHILD=exit job EXE 0")
	code, _, body := request(t, s.url, "GET", "/scripts/v1/status?apikey=s3cret", "")
	if code != 401 || !strings.Contains(body, "not accepted in the URL") {
		t.Fatalf("admin token as ?apikey=: %d %s", code, body)
	}
	if code, _, body := request(t, s.url, "GET", "/scripts/v1/status", "", "Authorization", "Bearer s3cret"); code != 200 {
		t.Fatalf("admin token as a header: %d %s", code, body)
	}
}

// The guest API is the admin's: without --token there is no admin to tell
// from anybody else.
func TestGuestKeysNeedAnAdminToken(t *testing.T) {
	s := newDetachedServer(t, t.TempDir(), "-e=TESTCHILD=exit job EXE 0")
	for _, ep := range []struct{ method, path, body string }{
		{"POST", "/scripts/v1/guest/create", `{"name":"job","run":true}`},
		{"GET", "/scripts/v1/guest/list", ""},
		{"POST", "/scripts/v1/guest/delete/abc", ""},
	} {
		code, _, body := request(t, s.url, ep.method, ep.path, ep.body)
		if code != 403 || !strings.Contains(body, `"errorcode":"no_token"`) {
			t.Errorf("%s %s without a token: %d %s", ep.method, ep.path, code, body)
		}
	}
	tok := newDetachedServerToken(t, t.TempDir(), detached.Config{}, "s3cret", "-e=TESTCHILD=exit job EXE 0")
	code, _, body := request(t, tok.url, "POST", "/scripts/v1/guest/delete/nosuchguest", "", "Authorization", "Bearer s3cret")
	if code != 404 || !strings.Contains(body, "no guest key with this id") {
		t.Fatalf("deleting an unknown guest: %d %s", code, body)
	}
	code, _, body = request(t, tok.url, "POST", "/scripts/v1/guest/create", `{"name":"nosuchscript","run":true}`, "Authorization", "Bearer s3cret")
	if code != 404 || !strings.Contains(body, `"errorcode":"invalid_name"`) {
		t.Fatalf("a key for a script that does not exist: %d %s", code, body)
	}
}

// rawConn is a client connection written and read by hand.
type rawConn = testhttp.Conn

func dialRaw(t *testing.T, url string) *rawConn { return testhttp.Dial(t, url) }

// A client with no token that never finishes its body gets its 401 at
// once, and the connection is closed: it cannot hold the server's resources
// by trickling (or never sending) a body.
func TestUnauthenticatedBodyIsNotWaitedFor(t *testing.T) {
	s := newServer(t, serverOpts{cfg: webapi.Config{Token: "s3cret", BodyTimeout: time.Hour}})
	for _, framing := range []string{"Content-Length: 100000", "Transfer-Encoding: chunked"} {
		t.Run(framing, func(t *testing.T) {
			c := dialRaw(t, s.url)
			fmt.Fprintf(c, "POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n\r\n{\"alias\":", framing)
			resp, body := c.Response(t)
			if resp.StatusCode != 401 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if !resp.Close {
				t.Fatal("the 401 keeps a connection whose body was never read")
			}
			if !c.Closed(t) {
				t.Fatal("the connection stayed open")
			}
		})
	}
}

// An authorized client has --body-timeout per MiB of the body's limit to
// send its body: then 408, and the connection is closed.
func TestSlowBodyTimesOut(t *testing.T) {
	s := newServer(t, serverOpts{cfg: webapi.Config{BodyTimeout: 300 * time.Millisecond}})
	c := dialRaw(t, s.url)
	fmt.Fprintf(c, "POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"alias\":")
	resp, body := c.Response(t)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, "--body-timeout") {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if !c.Closed(t) {
		t.Fatal("the connection stayed open")
	}
	// Live stdin: the body timeout bounds the request line only.
	c = dialRaw(t, s.url)
	path, env := fakeCmd("cat")
	line := fmt.Sprintf(`{"alias":"slowstdin","cmd":%q,"envs":{%q:%q}}`+"\n", path, envName(env), envValue(env))
	fmt.Fprintf(c, "POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nRexec-Stdin: stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(line), line)
	resp, err := http.ReadResponse(c.Reader(), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("live stdin: %v %v", resp, err)
	}
	time.Sleep(time.Second) // past the body timeout: stdin may take as long as the run
	fmt.Fprintf(c, "3\r\nhi\n\r\n0\r\n\r\n")
	out, _ := io.ReadAll(resp.Body)
	if string(out) != "hi\n" || resp.Trailer.Get("Process-Exit-Code") != "0" {
		t.Fatalf("live stdin after a pause: %q %v", out, resp.Trailer)
	}
}

// fakeCmd is the command and TESTCHILD variable of a fake child.
func fakeCmd(mode string) (path, env string) { return testchild.Command(mode) }

func envName(kv string) string  { n, _, _ := strings.Cut(kv, "="); return n }
func envValue(kv string) string { _, v, _ := strings.Cut(kv, "="); return v }

// A live-stdin run may end before its body does (a child that exits before
// reading all of its stdin), with the child's stdin feed blocked reading
// the body: net/http then aborts that read and cannot tell where the body
// stood, so the rest of the body must never be read as the connection's
// next request. The server closes such a connection. Many at once, so that
// the race shows under load too.
func TestLiveStdinBodyNeverBecomesARequest(t *testing.T) {
	s := newServer(t, serverOpts{})
	const clients, rounds = 4, 6
	errs := make(chan error, clients)
	for c := range clients {
		go func() {
			var err error
			for i := range rounds {
				if err = stdinBodyRound(s.url, fmt.Sprintf("early%d-%d", c, i)); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// stdinBodyRound runs a child that exits at once with stdin still being
// sent, then sends the rest of the body and a request of its own.
func stdinBodyRound(url, alias string) error {
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // a failure bound only
	br := bufio.NewReader(conn)
	path, env := fakeCmd("exit")
	line := fmt.Sprintf(`{"alias":%q,"cmd":%q,"args":["0"],"envs":{%q:%q}}`+"\n", alias, path, envName(env), envValue(env))
	fmt.Fprintf(conn, "POST /process HTTP/1.1\r\nHost: 127.0.0.1\r\nRexec-Stdin: stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(line), line)
	// Some stdin that the child never reads; the body stays open.
	fmt.Fprintf(conn, "5\r\nhello\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("%s: %v", alias, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Trailer.Get("Process-Exit-Code") != "0" {
		return fmt.Errorf("%s: %d %q %v", alias, resp.StatusCode, body, resp.Trailer)
	}
	// The rest of the body, then a request of its own.
	fmt.Fprintf(conn, "5\r\nworld\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	next, err := http.ReadResponse(br, nil)
	switch {
	case err != nil:
		// Closed: the one safe answer when the body was not read to its
		// end.
	case next.StatusCode == 200:
		// Read to its end and answered in order: fine too.
		next.Body.Close()
	default:
		b, _ := io.ReadAll(next.Body)
		return fmt.Errorf("%s: the rest of a stdin body was taken for a request: %d %q", alias, next.StatusCode, b)
	}
	return nil
}
