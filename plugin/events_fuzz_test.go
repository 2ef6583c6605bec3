package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// Whatever a key or a command emits, NewEvent either refuses it with an
// *EventError that names a field, or makes an event that every subscriber
// can be given: a valid name, a compact JSON object of at most MaxEventData
// bytes, and guard perms that parse.
func FuzzNewEvent(f *testing.F) {
	for _, c := range []struct{ name, data, perms string }{
		{"deploy.step", `{"step":1}`, ""}, {"a", ``, "x y[z]"}, {"*", `{}`, ""}, {"a b", `{}`, ""},
		{"x", `[1]`, ""}, {"x", `"s"`, ""}, {"x", ` { "a" : [ 1 , 2 ] } `, "Bad"}, {"x", `{"a":1}{}`, ""},
		{"x", "{\"\xff\":1}", ""}, {"x", `null`, "p[]"}, {strings.Repeat("n", 129), `{}`, ""},
	} {
		f.Add(c.name, []byte(c.data), c.perms)
	}
	f.Fuzz(func(t *testing.T, name string, data []byte, perms string) {
		guards := strings.Fields(perms)
		e, err := NewEvent(name, data, guards, "fuzz")
		if err != nil {
			var bad *EventError
			if !errors.As(err, &bad) || (bad.Field != "name" && bad.Field != "data" && bad.Field != "perms") {
				t.Fatalf("%q %q %q: an error without a field: %v", name, data, perms, err)
			}
			return
		}
		if CheckEventName(e.Name) != nil || e.Name != name {
			t.Fatalf("accepted the name %q", name)
		}
		var obj map[string]json.RawMessage
		if len(e.Data) > MaxEventData || !utf8.Valid(e.Data) || json.Unmarshal(e.Data, &obj) != nil || obj == nil {
			t.Fatalf("accepted data %q as %q", data, e.Data)
		}
		var compact bytes.Buffer
		if json.Compact(&compact, e.Data) != nil || compact.String() != string(e.Data) {
			t.Fatalf("data %q is not compact", e.Data)
		}
		if len(e.Perms) > MaxEventPerms {
			t.Fatalf("%d perms", len(e.Perms))
		}
		for _, p := range e.Perms {
			if _, err := ParsePerm(p); err != nil {
				t.Fatalf("accepted the perm %q", p)
			}
		}
	})
}
