package webapi_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rexec/rexec/detached"
)

// The Cloud Storage Server /scripts SDK sends its key as X-APIKey, a guest
// key's rights as 0 and 1, and deletes a guest key with DELETE. The same
// keys and the same checks as with "Authorization: Bearer".
func TestSeedSDKWire(t *testing.T) {
	d := newDetachedServerToken(t, t.TempDir(), detached.Config{}, "s3cret", "-e=TESTCHILD=exit job EXE 0")
	api := func(key string) []string { return []string{"X-APIKey", key} }

	// The admin token, on both APIs.
	if code, _, body := request(t, d.url, "GET", "/scripts/v1/status", "", api("s3cret")...); code != 200 {
		t.Fatalf("admin token as X-APIKey on /scripts/v1: %d %s", code, body)
	}
	if code, _, body := request(t, d.url, "GET", "/process", "", api("s3cret")...); code != 200 {
		t.Fatalf("admin token as X-APIKey on /process: %d %s", code, body)
	}
	// A missing or wrong key is the seed's 403 invalid_missing_apikey.
	for _, key := range []string{"", "wrong", "s3cret2", " "} {
		if code, _, body := request(t, d.url, "GET", "/scripts/v1/status", "", api(key)...); code != 403 || !strings.Contains(body, `"errorcode":"invalid_missing_apikey"`) {
			t.Errorf("X-APIKey %q: %d %s", key, code, body)
		}
	}
	// The SDK sends its key only on a connection's first request: each
	// answer to a request with X-APIKey closes its connection, so that
	// the SDK's next call opens a new one and sends the key again.
	c := dialRaw(t, d.url)
	fmt.Fprintf(c, "GET /scripts/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nX-APIKey: s3cret\r\n\r\n")
	if resp, body := c.Response(t); resp.StatusCode != 200 || !resp.Close || !c.Closed(t) {
		t.Errorf("X-APIKey on a kept-alive connection: %d close=%v %s", resp.StatusCode, resp.Close, body)
	}
	if _, h, _ := request(t, d.url, "GET", "/scripts/v1/status", "", "Authorization", "Bearer s3cret"); h.Get("Connection") == "close" {
		t.Error("a bearer token's connection is closed too")
	}

	// Authorization wins over X-APIKey: a wrong bearer is not saved by a
	// right X-APIKey.
	if code, _, _ := request(t, d.url, "GET", "/process", "", "Authorization", "Bearer wrong", "X-APIKey", "s3cret"); code != 401 {
		t.Errorf("a wrong bearer with a right X-APIKey: %d", code)
	}

	// A guest key with rights sent as 1 and 0, used as X-APIKey: only its
	// rights, only on /scripts/v1.
	code, body := 0, ""
	code, _, body = request(t, d.url, "POST", "/scripts/v1/guest/create", `{"name":"job","run":1,"cancel":0,"status":1,"monitor":0,"expires":0}`, api("s3cret")...)
	if code != 200 || !strings.Contains(body, `"run":true`) || !strings.Contains(body, `"cancel":false`) {
		t.Fatalf("guest/create with 0/1 rights: %d %s", code, body)
	}
	id, key := between(body, `"id":"`, `"`), between(body, `"apikey":"`, `"`)
	if code, _, body := request(t, d.url, "POST", "/scripts/v1/run", `{"name":"job"}`, api(key)...); code != 200 {
		t.Fatalf("the guest's right, as X-APIKey: %d %s", code, body)
	}
	if code, _, _ := request(t, d.url, "GET", "/process", "", api(key)...); code != 403 {
		t.Errorf("a guest key outside /scripts/v1 as X-APIKey: %d", code)
	}
	if code, _, body := request(t, d.url, "POST", "/scripts/v1/guest/delete/"+id, "", api(key)...); code != 400 || !strings.Contains(body, `"errorcode":"access_denied"`) {
		t.Errorf("a guest deleting keys: %d %s", code, body)
	}
	for _, bad := range []string{`{"run":2}`, `{"run":"1"}`, `{"run":1.0}`, `{"run":-1}`, `{"run":"true"}`} {
		if code, _, body := request(t, d.url, "POST", "/scripts/v1/guest/create", bad, api("s3cret")...); code != 400 || !strings.Contains(body, `run\": expected true, false, 1 or 0`) {
			t.Errorf("%s: %d %s", bad, code, body)
		}
	}

	// DELETE deletes, as POST does; other methods are refused with both in
	// Allow, in the seed's convention.
	if code, h, body := request(t, d.url, "PUT", "/scripts/v1/guest/delete/"+id, "", api("s3cret")...); code != 400 || h.Get("Allow") != "POST, DELETE" ||
		!strings.Contains(body, `"errorcode":"use_delete_request"`) {
		t.Errorf("PUT: %d %v %s", code, h, body)
	}
	if code, h, body := request(t, d.url, "POST", "/scripts/v1/status", "", api("s3cret")...); code != 400 || h.Get("Allow") != "GET, HEAD" ||
		!strings.Contains(body, `"errorcode":"use_get_request"`) {
		t.Errorf("POST on a GET route: %d %v %s", code, h, body)
	}
	if code, h, _ := request(t, d.url, "PUT", "/scripts/v1/guest/delete/"+id, "", "Authorization", "Bearer s3cret"); code != 405 || h.Get("Allow") != "POST, DELETE" {
		t.Errorf("PUT with a bearer token: %d %v", code, h)
	}
	if code, _, body := request(t, d.url, "DELETE", "/scripts/v1/guest/delete/"+id, "", api("s3cret")...); code != 200 {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if code, _, _ := request(t, d.url, "GET", "/scripts/v1/status", "", api(key)...); code != 403 {
		t.Errorf("the deleted key still works: %d", code)
	}
	// Deleting what is not there: the seed says nothing; rexec's clients
	// are told.
	if code, _, body := request(t, d.url, "DELETE", "/scripts/v1/guest/delete/"+id, "", api("s3cret")...); code != 200 {
		t.Errorf("DELETE twice: %d %s", code, body)
	}
	if code, _, _ := request(t, d.url, "DELETE", "/scripts/v1/guest/delete/"+id, "", "Authorization", "Bearer s3cret"); code != 404 {
		t.Errorf("DELETE twice with a bearer token: %d", code)
	}
}

// between is the text of s between the first start and the next end.
func between(s, start, end string) string {
	_, s, _ = strings.Cut(s, start)
	s, _, _ = strings.Cut(s, end)
	return s
}
