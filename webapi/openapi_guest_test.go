package webapi_test

import (
	"strings"
	"testing"

	"github.com/rexec/rexec/detached"
)

// A guest key may read the document: the one endpoint outside /scripts/v1
// it may use.
func TestGuestKeyReadsTheOpenAPIDocument(t *testing.T) {
	d := newDetachedServerToken(t, t.TempDir(), detached.Config{}, "tok", "-e=TESTCHILD=exit job EXE 0")
	_, key := createGuest(t, d, map[string]any{"name": "job", "status": true})
	if code, h, body := request(t, d.url, "GET", "/openapi.json", "", "Authorization", "Bearer "+key); code != 200 ||
		h.Get("Content-Type") != "application/json" || !strings.Contains(body, `"openapi"`) {
		t.Fatalf("a guest key reading the document: %d %v %.200s", code, h, body)
	}
	for _, p := range []string{"/process", "/metrics", "/nowhere"} {
		if code, _, body := request(t, d.url, "GET", p, "", "Authorization", "Bearer "+key); code != 403 {
			t.Errorf("a guest key on %s: %d %s", p, code, body)
		}
	}
	// In the URL, a key is for /scripts/v1 only; the document needs one.
	for _, auth := range [][]string{{}, {"Authorization", "Bearer nosuchkey"}} {
		if code, _, body := request(t, d.url, "GET", "/openapi.json?apikey="+key, "", auth...); code != 401 {
			t.Errorf("?apikey= on /openapi.json with %q: %d %s", auth, code, body)
		}
	}
	if code, h, _ := request(t, d.url, "POST", "/openapi.json", "", "Authorization", "Bearer "+key); code != 405 || h.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /openapi.json: %d %v", code, h)
	}
}
