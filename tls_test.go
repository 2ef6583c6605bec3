//go:build linux

package main

import (
	"crypto/tls"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rexec/rexec/internal/testtls"
)

// tlsSetup is a CA, a server certificate for 127.0.0.1 and a client
// certificate, all of it in files.
type tlsSetup struct {
	ca             *testtls.CA
	caFile         string
	server, client testtls.Issued
}

func newTLSSetup(t *testing.T) tlsSetup {
	dir := t.TempDir()
	ca := testtls.NewCA(t, "rexec test CA")
	return tlsSetup{ca: ca, caFile: ca.WriteCert(t, dir, "ca.pem"),
		server: ca.Issue(t, dir, "server", testtls.Leaf{CN: "server-1", Server: true}),
		client: ca.Issue(t, dir, "ci", testtls.Leaf{CN: "ci", O: "platform"})}
}

func (s tlsSetup) serveArgs() []string {
	return []string{"--tls-cert", s.server.CertFile, "--tls-key", s.server.KeyFile, "--tls-client-ca", s.caFile}
}

// The commands over TLS, against "rexec serve" with mutual TLS and no
// token: rexec run (its output, exit code and live stdin, over HTTP/2),
// the commands of detached runs (the client certificate is who asked),
// rexec health; and what each says when the TLS settings are wrong.
func TestClientCommandsOverTLS(t *testing.T) {
	s := newTLSSetup(t)
	tab := writeTab(t, "hello /bin/echo hello")
	_, url := serverProcess(t, append(s.serveArgs(), "--scripts", tab, "--data-dir", t.TempDir())...)
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("URL %s", url)
	}
	certs := []string{"--cacert", s.caFile, "--cert", s.client.CertFile, "--key", s.client.KeyFile}
	env := []string{"REXEC_URL=" + url, "REXEC_CACERT=" + s.caFile, "REXEC_CERT=" + s.client.CertFile, "REXEC_KEY=" + s.client.KeyFile}

	t.Run("run", func(t *testing.T) {
		rexec(t, nil, nil, append(append([]string{"run", "--url", url}, certs...), "--", "sh", "-c", "echo hi; exit 7")...).want(t, 7, "hi\n", "")
		rexec(t, strings.NewReader("one\ntwo\n"), env, "run", "-i", "--", "cat").want(t, 0, "one\ntwo\n", "")
	})
	t.Run("wrong TLS settings", func(t *testing.T) {
		// The system's CAs do not know the test CA: nothing ran (6).
		rexec(t, nil, nil, "run", "--url", url, "--", "true").want(t, 6, "", "certificate")
		// Trusted, but without a certificate or a token: 401 (3).
		rexec(t, nil, nil, "run", "--url", url, "--cacert", s.caFile, "--", "true").want(t, 3, "", "client certificate")
		// Files that are not there, or half a pair: a usage error (2).
		rexec(t, nil, nil, "run", "--url", url, "--cacert", "/nonexistent.pem", "--", "true").want(t, 2, "", "/nonexistent.pem")
		rexec(t, nil, nil, "run", "--url", url, "--cert", s.client.CertFile, "--", "true").want(t, 2, "", "--key")
		rexec(t, nil, nil, "history", "--url", url, "--cacert", s.client.KeyFile).want(t, 2, "", "PRIVATE KEY")
	})
	t.Run("detached", func(t *testing.T) {
		r := rexec(t, nil, env, "submit", "--wait", "hello")
		if r.code != 0 || !strings.Contains(r.stdout, "hello") {
			t.Fatalf("submit --wait: %+v", r)
		}
		r = rexec(t, nil, env, "history", "--json")
		if r.code != 0 || !strings.Contains(r.stdout, `"who":"CN=ci,O=platform"`) {
			t.Fatalf("history: %+v", r)
		}
		r = rexec(t, nil, env, "history")
		id := strings.Fields(strings.Split(r.stdout, "\n")[1])[0]
		r = rexec(t, nil, env, "status", id)
		if r.code != 0 || !strings.Contains(r.stdout, "CN=ci,O=platform") {
			t.Fatalf("status: %+v", r)
		}
	})
	t.Run("health", func(t *testing.T) {
		rexec(t, nil, nil, "health", "--url", url, "--cacert", s.caFile).want(t, 0, "ok\n", "")
		rexec(t, nil, nil, "health", "--url", url, "--insecure").want(t, 0, "ok\n", "")
		rexec(t, nil, nil, "health", "--url", url).want(t, 1, "", "certificate")
	})
}

// SIGHUP reads the TLS files again: the next connection gets the new
// certificate.
func TestSIGHUPReloadsTLS(t *testing.T) {
	s := newTLSSetup(t)
	srv, url := serverProcess(t, s.serveArgs()...)
	next := s.ca.Issue(t, t.TempDir(), "next", testtls.Leaf{CN: "server-2", Server: true})
	for _, f := range [][2]string{{next.CertFile, s.server.CertFile}, {next.KeyFile, s.server.KeyFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: s.ca.Pool(), Certificates: []tls.Certificate{s.client.TLS}}}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get(url + "/process")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		if resp.TLS.PeerCertificates[0].Subject.CommonName == "server-2" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not load the new certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Bad TLS flags and files stop rexec serve with the usage code, saying why.
func TestServeTLSFlagsRefused(t *testing.T) {
	s := newTLSSetup(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", s.server.CertFile}, "--tls-key"},
		{[]string{"--tls-client-ca", s.caFile}, "--tls-client-ca needs --tls-cert"},
		{[]string{"--tls-cert", s.server.CertFile, "--tls-key", s.client.KeyFile}, "does not match"},
		{[]string{"--tls-cert", s.server.CertFile, "--tls-key", s.server.KeyFile, "--tls-client-ca", s.server.KeyFile}, "PRIVATE KEY"},
		// TLS alone does not open a non-loopback address: it proves the
		// server to clients, not clients to the server.
		{[]string{"-i", "0.0.0.0", "--tls-cert", s.server.CertFile, "--tls-key", s.server.KeyFile}, "without a token or mutual TLS"},
	} {
		r := rexec(t, nil, nil, append([]string{"serve", "-p", "0", "--data-dir", t.TempDir()}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %s; want 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}
