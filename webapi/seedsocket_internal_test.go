package webapi

import (
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
)

func TestSocketCall(t *testing.T) {
	for _, c := range []struct {
		apiPath, call, target string
	}{
		{"/scripts/v1/run", "run", "/scripts/v1/run"},
		{"/scripts/v1/run/", "run", "/scripts/v1/run"},
		{"scripts/v1/monitor", "monitor", "/scripts/v1/monitor"},
		{"/scripts/x/status", "status", "/scripts/v1/status"}, // the version is not checked
		{"/scripts/v1/status/ab%2Fc", "status", "/scripts/v1/status/ab%2Fc"},
		{"/scripts/v1/status/a?b=c", "status", "/scripts/v1/status/a"},
		{"/scripts/v1/cancel/id", "cancel", "/scripts/v1/cancel/id"},
		{"/scripts/v1/guest/delete/7", "guest", "/scripts/v1/guest/delete/7"},
		{"/scripts/v1/guest/list", "guest", "/scripts/v1/guest/list"},
		{"/scripts/v1/cancel/..", "", ""},
		{"/scripts/v1/status/.", "", ""},
		{"/scripts/v1/cancel//x", "", ""},
		{"/scripts/v1/cancel", "", ""},
		{"/scripts/v1/run/x", "", ""},
		{"/scripts/v1/guest/delete", "", ""},
		{"/scripts/v1/output/x", "", ""},
		{"/scripts/v1/events", "", ""},
		{"/scripts/v1", "", ""},
		{"/process", "", ""},
		{"/scripts/v1/status/../../../process", "", ""},
		{"%zz", "", ""},
	} {
		call, target, ok := socketCall(c.apiPath)
		if ok != (c.call != "") || call != c.call || target != c.target {
			t.Errorf("socketCall(%q) = %q, %q, %v; want %q, %q", c.apiPath, call, target, ok, c.call, c.target)
		}
	}
}

// Whatever api_path a client sends, a call goes only to a route of the
// /scripts/v1 API that serves its path as it is: a path the router would
// clean (and redirect), or one outside the API, is no call.
func FuzzSocketCall(f *testing.F) {
	for _, p := range []string{"/scripts/v1/run", "/scripts/v1/status/x", "/scripts/v1/cancel/..", "/scripts/v1/guest/delete/%2e%2e",
		"/scripts/v1/status/a%00b", "/scripts//status", "/scripts/v1/cancel/a%2F..%2Fb"} {
		f.Add(p)
	}
	calls := map[string]bool{"run": true, "status": true, "cancel": true, "guest": true, "monitor": true}
	f.Fuzz(func(t *testing.T, apiPath string) {
		call, target, ok := socketCall(apiPath)
		if !ok {
			return
		}
		if !calls[call] || !strings.HasPrefix(target, "/scripts/v1/"+call) {
			t.Fatalf("%q: call %q, target %q", apiPath, call, target)
		}
		u, err := url.Parse(target)
		// The router cleans the escaped path, and redirects when that
		// changes it.
		if err != nil || u.RawQuery != "" || u.Fragment != "" || path.Clean(u.EscapedPath()) != u.EscapedPath() {
			t.Fatalf("%q: target %q is not a clean path (%v)", apiPath, target, err)
		}
		if _, err := http.NewRequest(http.MethodGet, target, nil); err != nil {
			t.Fatalf("%q: target %q: %v", apiPath, target, err)
		}
	})
}
