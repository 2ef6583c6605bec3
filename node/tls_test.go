package node_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/internal/testchild"
	"github.com/rexec/rexec/internal/testserver"
	"github.com/rexec/rexec/internal/testtls"
	"github.com/rexec/rexec/internal/tlsfiles"
	"github.com/rexec/rexec/node"
	"github.com/rexec/rexec/webapi"
)

// tlsClient is an HTTP client that trusts ca, shows cert (if any), and
// speaks HTTP/2 (h2) or HTTP/1.1 only. It shows cert whatever CAs the
// server names (crypto/tls would show none of another CA), as an attacker
// would.
func tlsClient(t *testing.T, ca *testtls.CA, cert *testtls.Issued, h2 bool) *http.Client {
	cfg := &tls.Config{RootCAs: ca.Pool()}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// tlsServer starts a node serving TLS with a server certificate of ca,
// verifying client certificates with clientCA when it is set.
func tlsServer(t *testing.T, ca *testtls.CA, clientCA string, cfg node.Config) (*testserver.Server, tlsfiles.Files) {
	dir := t.TempDir()
	srv := ca.Issue(t, dir, "server", testtls.Leaf{CN: "rexec-server", Server: true})
	cfg.TLS = tlsfiles.Files{Cert: srv.CertFile, Key: srv.KeyFile, ClientCA: clientCA}
	s := testserver.Start(t, cfg)
	if !strings.HasPrefix(s.URL, "https://127.0.0.1:") {
		t.Fatalf("URL %s", s.URL)
	}
	return s, cfg.TLS
}

func postProcess(ctx context.Context, hc *http.Client, url, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/process", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	return hc.Do(req)
}

// Over TLS, with HTTP/2 and with HTTP/1.1, a run's output streams while it
// runs, quiet spells included (a TLS connection is never parked: its
// socket carries records, not the chunks a parked stream writes), its
// trailers carry the exit status, and a client that goes away has the
// child killed. Over HTTP/2 going away is a stream reset: the connection
// stays and serves the next request.
func TestTLSStreams(t *testing.T) {
	ca := testtls.NewCA(t, "test CA")
	s, _ := tlsServer(t, ca, "", node.Config{})
	for _, h2 := range []bool{true, false} {
		name, major := "HTTP/1.1", 1
		if h2 {
			name, major = "HTTP/2", 2
		}
		t.Run(name, func(t *testing.T) {
			hc := tlsClient(t, ca, nil, h2)
			alias := "stream-" + strconv.Itoa(major)
			resp, err := postProcess(context.Background(), hc, s.URL,
				`{"alias":"`+alias+`","cmd":"sh","args":["-c","echo one; sleep 0.5; echo two; exit 3"]}`)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != major || resp.TLS == nil {
				t.Fatalf("%s, proto %s, TLS %v", resp.Status, resp.Proto, resp.TLS != nil)
			}
			br := bufio.NewReader(resp.Body)
			if l, err := br.ReadString('\n'); l != "one\n" {
				t.Fatalf("first line %q, %v", l, err)
			}
			// The child still runs: the line came as it was written.
			if !listed(t, hc, s.URL, alias) {
				t.Fatal("the first line came only after the run's end")
			}
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "two\n" {
				t.Fatalf("rest %q, %v", rest, err)
			}
			if got := resp.Trailer.Get("Process-Exit-Code"); got != "3" {
				t.Fatalf("trailers %v", resp.Trailer)
			}

			// Kill on disconnect.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			resp, err = postProcess(ctx, hc, s.URL, `{"alias":"gone-`+strconv.Itoa(major)+`","cmd":"sh","args":["-c","echo $$; exec sleep 60"]}`)
			if err != nil {
				t.Fatal(err)
			}
			l, err := bufio.NewReader(resp.Body).ReadString('\n')
			pid, perr := strconv.Atoi(strings.TrimSpace(l))
			if err != nil || perr != nil {
				t.Fatalf("pid line %q, %v", l, err)
			}
			cancel()
			resp.Body.Close()
			if !testchild.WaitGone(pid, 10*time.Second) {
				t.Fatalf("pid %d still runs after its client went away", pid)
			}
			if h2 {
				// The reset ended one stream, not the connection.
				var reused bool
				trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, s.URL+"/process", nil)
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if !reused {
					t.Fatal("the HTTP/2 connection was not kept after a stream reset")
				}
			}
		})
	}
	// A plain-HTTP request on the TLS port gets net/http's 400, and the
	// server goes on.
	resp, err := http.Get(strings.Replace(s.URL, "https://", "http://", 1) + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP on the TLS port: %s", resp.Status)
		}
	}
	if resp, err := tlsClient(t, ca, nil, true).Get(s.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
}

// listed says whether GET /process lists alias.
func listed(t *testing.T, hc *http.Client, url, alias string) bool {
	t.Helper()
	runs := processList(t, hc, url, "")
	for _, r := range runs {
		if r["alias"] == alias {
			return true
		}
	}
	return false
}

func processList(t *testing.T, hc *http.Client, url, token string) []map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/process", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Runs []map[string]any }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&body) != nil {
		t.Fatalf("GET /process: %s", resp.Status)
	}
	return body.Runs
}

// do sends a request with an optional bearer key and returns the status
// and the body.
func do(t *testing.T, hc *http.Client, method, url, key, body string) (int, string, error) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// With --tls-client-ca, a client certificate that verifies stands in for
// the token, and its subject is who asked: in GET /process and in the run
// history. Without a certificate, the token or a guest key is needed; a
// certificate of another CA fails the handshake; a wrong token is refused
// even with a good certificate.
func TestMutualTLS(t *testing.T) {
	ca := testtls.NewCA(t, "test CA")
	dir := t.TempDir()
	clientCA := ca.WriteCert(t, dir, "clients.pem")
	ci := ca.Issue(t, dir, "ci", testtls.Leaf{CN: "ci-runner", O: "platform"})
	const subject = "CN=ci-runner,O=platform"
	other := testtls.NewCA(t, "other CA").Issue(t, dir, "intruder", testtls.Leaf{CN: "intruder"})

	for _, token := range []string{"", "s3cret"} {
		t.Run("token="+token, func(t *testing.T) {
			s, _ := tlsServer(t, ca, clientCA, node.Config{ScriptsFile: writeExectab(t, "hello /bin/echo hello\n"),
				Web: webapi.Config{Token: token}})
			withCert, noCert := tlsClient(t, ca, &ci, true), tlsClient(t, ca, nil, true)

			code, body, err := do(t, noCert, "GET", s.URL+"/process", "", "")
			if err != nil || code != 401 || !strings.Contains(body, "client certificate") {
				t.Fatalf("no certificate, no token: %d %s %v", code, body, err)
			}
			if code, _, err := do(t, noCert, "GET", s.URL+"/healthz", "", ""); err != nil || code != 200 {
				t.Fatalf("probe without a certificate: %d %v", code, err)
			}
			if _, _, err := do(t, tlsClient(t, ca, &other, true), "GET", s.URL+"/process", "", ""); err == nil {
				t.Fatal("a certificate of another CA was accepted")
			}
			if code, _, err := do(t, withCert, "GET", s.URL+"/process", "wrong", ""); err != nil || code != 401 {
				t.Fatalf("a wrong token with a good certificate: %d %v", code, err)
			}
			if token != "" {
				if code, _, err := do(t, noCert, "GET", s.URL+"/process", token, ""); err != nil || code != 200 {
					t.Fatalf("the token without a certificate: %d %v", code, err)
				}
			}

			// Who asked, attached.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			resp, err := postProcess(ctx, withCert, s.URL, `{"alias":"who","cmd":"sleep","args":["60"]}`)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("POST /process with a certificate: %v %v", resp, err)
			}
			defer resp.Body.Close()
			runs := processList(t, withCert, s.URL, "")
			if len(runs) != 1 || runs[0]["who"] != subject {
				t.Fatalf("GET /process: %v", runs)
			}
			if token != "" { // the token and the certificate: the certificate says who
				if runs := processList(t, tlsClient(t, ca, &ci, false), s.URL, token); runs[0]["who"] != subject {
					t.Fatalf("GET /process with both: %v", runs)
				}
			}
			cancel()

			// Who asked, detached: in the history.
			code, body, err = do(t, withCert, "POST", s.URL+"/scripts/v1/run", "", `{"name":"hello"}`)
			var run struct{ ID string }
			if err != nil || code != 200 || json.Unmarshal([]byte(body), &run) != nil || run.ID == "" {
				t.Fatalf("submit: %d %s %v", code, body, err)
			}
			code, body, _ = do(t, withCert, "GET", s.URL+"/scripts/v1/status/"+run.ID, "", "")
			if code != 200 || !strings.Contains(body, `"who":"`+subject+`"`) {
				t.Fatalf("status: %d %s", code, body)
			}
			code, body, _ = do(t, withCert, "GET", s.URL+"/scripts/v1/runs?name=hello", "", "")
			if code != 200 || !strings.Contains(body, `"who":"`+subject+`"`) {
				t.Fatalf("history: %d %s", code, body)
			}

			// A certificate is an admin: it makes guest keys, even
			// without a token, and a guest key then acts as its guest,
			// certificate or not.
			code, body, _ = do(t, withCert, "POST", s.URL+"/scripts/v1/guest/create", "", `{"name":"hello","status":true}`)
			var guest struct {
				ID   string
				Info struct{ Apikey string }
			}
			if code != 200 || json.Unmarshal([]byte(body), &guest) != nil || guest.Info.Apikey == "" {
				t.Fatalf("guest/create with a certificate: %d %s", code, body)
			}
			for _, hc := range []*http.Client{withCert, noCert} {
				if code, _, _ := do(t, hc, "GET", s.URL+"/scripts/v1/status/"+run.ID, guest.Info.Apikey, ""); code != 200 {
					t.Fatalf("the guest's right: %d", code)
				}
				if code, _, _ := do(t, hc, "POST", s.URL+"/scripts/v1/run", guest.Info.Apikey, `{"name":"hello"}`); code != 403 {
					t.Fatalf("a right the guest lacks, certificate or not: %d", code)
				}
			}
		})
	}
}

// Reload reads the TLS files again: new connections get the new
// certificate and client CAs, the stream open on an old connection goes
// on to its end, and bad files leave the old ones in force.
func TestTLSReload(t *testing.T) {
	ca := testtls.NewCA(t, "CA one")
	dir := t.TempDir()
	clientCA := ca.WriteCert(t, dir, "clients.pem")
	alice := ca.Issue(t, dir, "alice", testtls.Leaf{CN: "alice"})
	s, files := tlsServer(t, ca, clientCA, node.Config{})

	old := tlsClient(t, ca, &alice, true)
	resp, err := postProcess(context.Background(), old, s.URL, `{"alias":"long","cmd":"sh","args":["-c","echo start; sleep 1; echo end"]}`)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if l, _ := br.ReadString('\n'); l != "start\n" {
		t.Fatalf("%q", l)
	}

	// Another CA issues the next server certificate and client
	// certificates.
	ca2 := testtls.NewCA(t, "CA two")
	next := ca2.Issue(t, t.TempDir(), "server", testtls.Leaf{CN: "rexec-server-2", Server: true, NotAfter: time.Now().Add(48 * time.Hour)})
	bob := ca2.Issue(t, dir, "bob", testtls.Leaf{CN: "bob"})
	replace(t, files.Cert, next.CertFile)
	replace(t, files.Key, next.KeyFile)
	replace(t, files.ClientCA, ca2.WriteCert(t, t.TempDir(), "ca2.pem"))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	peer := func(hc *http.Client) (string, int) {
		resp, err := hc.Get(s.URL + "/process")
		if err != nil {
			return "", 0
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].Subject.CommonName, resp.StatusCode
	}
	if cn, code := peer(tlsClient(t, ca2, &bob, true)); cn != "rexec-server-2" || code != 200 {
		t.Fatalf("after the reload: certificate %q, %d", cn, code)
	}
	if _, code := peer(tlsClient(t, ca2, &alice, true)); code != 0 {
		t.Fatalf("a client certificate of the CA no longer trusted: %d", code)
	}
	// The expiry gauge follows the certificate in force.
	_, metrics, _ := do(t, tlsClient(t, ca2, &bob, true), "GET", s.URL+"/metrics", "", "")
	want := "rexec_tls_cert_expiry_timestamp_seconds " + strconv.FormatFloat(float64(next.Cert.NotAfter.Unix()), 'g', -1, 64)
	if !strings.Contains(metrics, want+"\n") {
		t.Fatalf("metrics lack %q", want)
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "end\n" || resp.Trailer.Get("Process-Exit-Code") != "0" {
		t.Fatalf("the stream open across the reload: %q %v %v", rest, err, resp.Trailer)
	}

	// A bad file: the reload fails and changes nothing.
	if err := os.WriteFile(files.Cert, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("a bad certificate reloaded")
	}
	if cn, code := peer(tlsClient(t, ca2, &bob, true)); cn != "rexec-server-2" || code != 200 {
		t.Fatalf("after a failed reload: %q %d", cn, code)
	}
	if !strings.Contains(s.Logs.String(), "TLS reload failed") {
		t.Fatal("the failed reload was not logged")
	}
}

func replace(t *testing.T, dst, src string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Bad TLS files are an error of the configuration, named.
func TestTLSFilesRefused(t *testing.T) {
	ca := testtls.NewCA(t, "test CA")
	dir := t.TempDir()
	a := ca.Issue(t, dir, "a", testtls.Leaf{CN: "a", Server: true})
	b := ca.Issue(t, dir, "b", testtls.Leaf{CN: "b", Server: true})
	notPEM := dir + "/garbage"
	os.WriteFile(notPEM, []byte("hello"), 0o644)
	for name, tc := range map[string]struct {
		files tlsfiles.Files
		want  string
	}{
		"missing key":          {tlsfiles.Files{Cert: a.CertFile, Key: dir + "/none.key"}, "none.key"},
		"key of another":       {tlsfiles.Files{Cert: a.CertFile, Key: b.KeyFile}, "private key does not match"},
		"cert without key":     {tlsfiles.Files{Cert: a.CertFile}, "--tls-key"},
		"client CA not PEM":    {tlsfiles.Files{Cert: a.CertFile, Key: a.KeyFile, ClientCA: notPEM}, "no PEM certificate"},
		"client CA is a key":   {tlsfiles.Files{Cert: a.CertFile, Key: a.KeyFile, ClientCA: a.KeyFile}, `"PRIVATE KEY" PEM block`},
		"client CA is missing": {tlsfiles.Files{Cert: a.CertFile, Key: a.KeyFile, ClientCA: dir + "/nope.pem"}, "nope.pem"},
	} {
		t.Run(name, func(t *testing.T) {
			n := node.New(node.Config{TLS: tc.files, Web: webapi.Config{Addr: "127.0.0.1:0"}})
			err := n.Open()
			var cerr *node.ConfigError
			if !errors.As(err, &cerr) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want a ConfigError with %q", err, tc.want)
			}
		})
	}
}

// A detached run calls back over TLS (REXEC_URL is https://), with its run
// token and no client certificate, on a server with mutual TLS and no
// admin token. The script trusts the server's CA (SSL_CERT_FILE, which Go
// and OpenSSL read).
func TestCallbackOverTLS(t *testing.T) {
	ca := testtls.NewCA(t, "test CA")
	dir := t.TempDir()
	caFile := ca.WriteCert(t, dir, "ca.pem")
	path, env := testchild.Command("callback")
	tab := writeExectab(t, "-e="+env+" -e=SSL_CERT_FILE="+caFile+" cb '"+path+"'\n")
	s, _ := tlsServer(t, ca, caFile, node.Config{ScriptsFile: tab})
	ci := ca.Issue(t, dir, "ci", testtls.Leaf{CN: "ci"})
	hc := tlsClient(t, ca, &ci, true)
	code, body, err := do(t, hc, "POST", s.URL+"/scripts/v1/run", "", `{"name":"cb"}`)
	var run struct{ ID string }
	if err != nil || code != 200 || json.Unmarshal([]byte(body), &run) != nil {
		t.Fatalf("submit: %d %s %v", code, body, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body, _ = do(t, hc, "GET", s.URL+"/scripts/v1/status/"+run.ID, "", "")
		if strings.Contains(body, `"state":"done"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not done: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(body, `"result":{"answer":42}`) || !strings.Contains(body, `"task_title":"from the script"`) {
		t.Fatalf("the callbacks did not arrive: %s", body)
	}
}
