package webapi

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// The document is served with the build's version as info.version, and
// every other byte as written.
func TestWithInfoVersion(t *testing.T) {
	for _, version := range []string{"v1.2.3", "(devel)", `odd "quoted" \ version`} {
		out, err := withInfoVersion(openAPIDocument, version)
		if err != nil {
			t.Fatal(err)
		}
		var got, want map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%s: not JSON: %v", version, err)
		}
		json.Unmarshal(openAPIDocument, &want)
		want["info"].(map[string]any)["version"] = version
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the document changed beyond info.version", version)
		}
		i := bytes.Index(openAPIDocument, []byte(`"version": "(devel)"`))
		if i < 0 || !bytes.Equal(out[:i], openAPIDocument[:i]) {
			t.Errorf("%s: the bytes before info.version changed", version)
		}
	}
	if _, err := withInfoVersion([]byte(`{"info":{"version":1}}`), "v1"); err == nil {
		t.Error("a version that is not a string was replaced")
	}
	if _, err := withInfoVersion([]byte(`{"info":{}}`), "v1"); err == nil {
		t.Error("no info.version, and no error")
	}
}
