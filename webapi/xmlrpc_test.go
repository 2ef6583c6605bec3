package webapi_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/webapi"
)

// symbolicScript is a script as one written for the Symbolic runner calls
// back: curl posts XML-RPC with the run's id and token.
const symbolicScript = `#!/bin/sh
call() {
  curl -s -H 'Content-Type: text/xml' --data-binary "<?xml version=\"1.0\"?><methodCall><methodName>$1</methodName><params>$2</params></methodCall>" "$REXEC_URL/api/xmlrpc"
  echo
}
p() { echo "<param><value>$1</value></param>"; }
info='<struct><member><name>status</name><value>ok</value></member><member><name>files</name><value><int>12</int></value></member></struct>'
call getAllMachines "$(p externalscript)$(p "$REXEC_RUN_TOKEN")"
call postInformation "$(p externalscript)$(p "$REXEC_RUN_TOKEN")$(p "$REXEC_RUN_ID")$(p "$info")"
call postInformation "$(p externalscript)$(p wrong)$(p "$REXEC_RUN_ID")$(p "$info")"
`

// xmlCall posts an XML-RPC call and returns the status and the body.
func xmlCall(t *testing.T, url, body string, header ...string) (int, string) {
	t.Helper()
	code, _, out := request(t, url, "POST", "/api/xmlrpc", body, append([]string{"Content-Type", "text/xml"}, header...)...)
	return code, out
}

func methodCall(name string, params ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?><methodCall><methodName>%s</methodName><params>`, name)
	for _, p := range params {
		fmt.Fprintf(&b, "<param><value>%s</value></param>", p)
	}
	b.WriteString("</params></methodCall>")
	return b.String()
}

const faultNotAuthorized = "<name>faultCode</name><value><int>1</int></value>"

// Scripts written for Symbolic call back over XML-RPC, the run's token as
// the password: postInformation stores the run's result as POST
// /scripts/v1/result does, getAllMachines names this host. A wrong
// password, another run's id, a run that ended are refused; the server's
// own token plays no part.
func TestSymbolicXMLRPC(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is needed: .ci/run installs it")
		}
		t.Skip("curl is not installed")
	}
	script := filepath.Join(t.TempDir(), "symbolic.sh")
	if err := os.WriteFile(script, []byte(symbolicScript), 0o755); err != nil {
		t.Fatal(err)
	}
	d := newDetachedServerFull(t, t.TempDir(), detached.Config{}, webapi.Config{Token: "admin-s3cret"},
		"-e=PATH="+filepath.Dir(curl)+":/usr/bin:/bin symbolic "+script,
		"tok /bin/sh -c 'env | grep ^REX.C_RUN_TOKEN=; exec sleep 60'", // REX.C: EXE would be replaced
		"-e=TESTCHILD=hang hang EXE")

	// The script, end to end.
	id := d.submit(t, map[string]any{"name": "symbolic"})
	st := d.waitState(t, id, "done")
	out := adminOutput(t, d, id)
	lines := strings.Split(out, "<?xml")[1:] // one answer a call
	host, _ := os.Hostname()
	if len(lines) != 3 || !strings.Contains(lines[0], "<string>"+host+"</string>") ||
		!strings.Contains(lines[1], "<boolean>1</boolean>") || !strings.Contains(lines[2], faultNotAuthorized) {
		t.Fatalf("the script's calls:\n%s", out)
	}
	if res, _ := st["result"].(map[string]any); res["status"] != "ok" || res["files"] != 12.0 {
		t.Fatalf("the posted information is not the run's result: %v", st)
	}

	// From here, by hand: a running run's token, another's id.
	tokRun := d.submit(t, map[string]any{"name": "tok"})
	hangRun := d.submit(t, map[string]any{"name": "hang"})
	d.waitState(t, hangRun, "running")
	token := ""
	for deadline := time.Now().Add(15 * time.Second); token == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		o := adminOutput(t, d, tokRun)
		for _, l := range strings.Split(o, "\n") {
			if v, ok := strings.CutPrefix(l, "REXEC_RUN_TOKEN="); ok {
				token = v
			}
		}
	}
	if token == "" {
		t.Fatal("the run did not print its token")
	}
	refused := map[string]string{
		"a token for another run":   methodCall("postInformation", "u", token, hangRun, "x"),
		"the admin token":           methodCall("postInformation", "u", "admin-s3cret", hangRun, "x"),
		"no password":               methodCall("postInformation", "u", "", hangRun, "x"),
		"getAllMachines, bad token": methodCall("getAllMachines", "u", "admin-s3cret"),
	}
	// The run's own token, while it runs: a value that is not a struct is
	// kept as {"information": value}.
	if code, body := xmlCall(t, d.url, methodCall("postInformation", "u", token, tokRun, "<int>7</int>")); code != 200 || !strings.Contains(body, "<boolean>1</boolean>") {
		t.Fatalf("its own token: %d %s", code, body)
	}
	if st := d.status(t, tokRun); fmt.Sprint(st["result"]) != "map[information:7]" {
		t.Fatalf("result %v", st["result"])
	}
	// Once the run has ended, its token no longer works.
	if code, a := d.call(t, "POST", "/scripts/v1/cancel/"+tokRun, nil); code != 200 {
		t.Fatalf("cancel: %d %v", code, a)
	}
	d.waitState(t, tokRun, "done")
	refused["an ended run's token"] = methodCall("postInformation", "u", token, tokRun, "x")
	refused["getAllMachines, an ended run's token"] = methodCall("getAllMachines", "u", token)
	for name, body := range refused {
		if code, body := xmlCall(t, d.url, body); code != 200 || !strings.Contains(body, faultNotAuthorized) {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	if st := d.status(t, hangRun); st["result"] != nil {
		t.Fatalf("a refused call set a result: %v", st)
	}

	// Calls that are not the API's: faults with the protocol's codes.
	for body, code := range map[string]string{
		"not xml":                               "-32700",
		methodCall("deleteEverything"):          "-32601",
		methodCall("postInformation", "u", "p"): "-32602",
		methodCall("getAllMachines"):            "-32602",
		methodCall("postInformation", "u", "p", "<array><data></data></array>", "x"): "-32602",
	} {
		if status, got := xmlCall(t, d.url, body); status != 200 || !strings.Contains(got, "<int>"+code+"</int>") {
			t.Errorf("%.60s: %d %s, want fault %s", body, status, got, code)
		}
	}

	// HTTP's own limits: the method, the size, a foreign browser page.
	resp, err := http.Get(d.url + "/api/xmlrpc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d %v", resp.StatusCode, resp.Header)
	}
	big := methodCall("postInformation", "u", "p", "id", strings.Repeat("x", 300<<10))
	if code, body := xmlCall(t, d.url, big); code != 413 {
		t.Errorf("a 300 KiB call: %d %.200s", code, body)
	}
	if code, _ := xmlCall(t, d.url, methodCall("getAllMachines", "u", "p"), "Origin", "http://attacker.example"); code != 403 {
		t.Errorf("a foreign page's call: %d", code)
	}
}

// adminOutput is a run's output, read with the server's token.
func adminOutput(t *testing.T, d *detachedServer, id string) string {
	t.Helper()
	code, _, body := request(t, d.url, "GET", "/scripts/v1/output/"+id, "", "Authorization", "Bearer "+d.token)
	if code != 200 {
		t.Fatalf("output: %d %s", code, body)
	}
	return body
}
