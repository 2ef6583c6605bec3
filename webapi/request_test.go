package webapi

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzDecodeProcessRequest(f *testing.F) {
	for _, seed := range []string{
		`{"alias":"du","cmd":"du","args":["-h","-c"]}`,
		`{"alias":"do_ls","cmd":"sh","args":["-c","ls -rtl"],"cwd":".","envs":{"PATH":"/bin","K":"V"}}`,
		`{"alias":"a","cmd":"cat","stdin":"x\n","stderr":"merge","timeout":"1.5s"}`,
		`{"alias":"a","script":"backup","args":["; rm -rf /","$(id)"]}`,
		`{"alias":"a","script":"backup","cmd":"x"}`,
		`{"alias":"a","cmd":"true","unknown":1}`,
		`{"alias":"a b","cmd":"x"}`,
		`{"alias":"a","cmd":"x","envs":{"A=B":"c"}}`,
		`{"alias":"a","cmd":"x","timeout":"-1s"}`,
		`[1,2]`, `null`, `{}`, `{"alias":`, `{"alias":"a","cmd":"x"} trailing`,
		`{"alias":"a","cmd":"x","Cmd":"y"}`, `{"alias":"a","cmd":"x","cmd":"y"}`, "{\"alias\":\"a\",\"cmd\":\"\xff\"}",
		`{"alias":"a","cmd":"\ud800"}`,
		`{"alias":"a","cmd":"x","memory":"64MiB","pids":32,"cpu":0.5}`,
		`{"alias":"a","cmd":"x","memory":1048576,"pids":"7","cpu":"250m"}`,
		`{"alias":"a","cmd":"x","memory":"1","pids":-1,"cpu":true}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeProcessRequest(body)
		if err != nil {
			var bad *badRequest
			if !errors.As(err, &bad) || bad.msg == "" {
				t.Fatalf("error %v is not a badRequest with a message", err)
			}
			if !utf8.ValidString(bad.msg) && utf8.Valid(body) {
				t.Fatalf("message is not UTF-8: %q", bad.msg)
			}
			return
		}
		// Whatever is accepted is safe to hand to the OS.
		if validAlias(req.Alias) != nil || (req.Cmd == "") == (req.Script == "") || strings.ContainsRune(req.Cmd, 0) {
			t.Fatalf("accepted an invalid request: %+v", req)
		}
		for _, a := range req.Args {
			if strings.ContainsRune(a, 0) {
				t.Fatalf("accepted a NUL in args: %q", a)
			}
		}
		// Nothing is repaired: what is accepted was valid UTF-8 as sent.
		for _, v := range append([]string{req.Alias, req.Cmd, req.Script, req.Cwd}, req.Args...) {
			if strings.ContainsRune(v, utf8.RuneError) && !utf8.Valid(body) {
				t.Fatalf("accepted invalid UTF-8 as %q", v)
			}
		}
		for k, v := range req.Envs {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
				t.Fatalf("accepted env %q=%q", k, v)
			}
		}
		if req.Timeout != "" && req.timeout <= 0 {
			t.Fatalf("accepted timeout %q as %v", req.Timeout, req.timeout)
		}
		if req.Stderr != "" && req.Stderr != "discard" && req.Stderr != "merge" {
			t.Fatalf("accepted stderr %q", req.Stderr)
		}
		if err := req.limits.Check(); err != nil {
			t.Fatalf("accepted limits %+v: %v", req.limits, err)
		}
	})
}

func TestMergeEnv(t *testing.T) {
	base := []string{"PATH=/bin", "HOME=/root", "A=1"}
	if got := mergeEnv(base, nil); !slices.Equal(got, base) {
		t.Fatalf("no envs: %v", got)
	}
	got := mergeEnv(base, map[string]string{"HOME": "/tmp", "B": "2", "A": ""})
	want := []string{"PATH=/bin", "A=", "B=2", "HOME=/tmp"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if !slices.Equal(base, []string{"PATH=/bin", "HOME=/root", "A=1"}) {
		t.Fatalf("base modified: %v", base)
	}
}

func TestServerEnvDropsRexecVariables(t *testing.T) {
	got := ServerEnv([]string{"REXEC_TOKEN=s", "PATH=/bin", "REXEC_PORT=1", "XREXEC_OK=1"})
	if !slices.Equal(got, []string{"PATH=/bin", "XREXEC_OK=1"}) {
		t.Fatalf("got %v", got)
	}
}

func TestWantsNDJSON(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                                       false,
		"*/*":                                    false,
		"application/x-ndjson":                   true,
		"text/plain, application/x-ndjson;q=0.9": true,
		"application/json":                       false,
	} {
		if got := wantsNDJSON(accept); got != want {
			t.Errorf("wantsNDJSON(%q) = %v", accept, got)
		}
	}
}
