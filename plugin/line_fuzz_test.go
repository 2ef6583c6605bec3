package plugin

import (
	"encoding/json"
	"errors"
	"testing"
)

// Whatever line a plugin writes, normalize either refuses it with a
// *ProtocolError or gives messages that jrpc2 takes: JSON objects with
// "jsonrpc", whose error, if any, is an object with a code.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"result":2}`, `{"jsonrpc":"2.0","id":1,"error":"bad"}`, `{"id":1,"error":{"message":"m"}}`,
		`[{"id":1,"result":1},{"method":"x"}]`, `{"id":1,"error":null,"result":1}`, `{"id":1,"error":7}`,
		`debug output`, `[]`, `null`, "\xff", `{"id":1,"result":"\u00e9"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		out, err := normalize(line)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("%q: an error that is not a protocol error: %v", line, err)
			}
			return
		}
		var msgs []map[string]json.RawMessage
		if out[0] == '[' {
			if err := json.Unmarshal(out, &msgs); err != nil {
				t.Fatalf("%q gave %q: %v", line, out, err)
			}
		} else {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(out, &m); err != nil || m == nil {
				t.Fatalf("%q gave %q: %v", line, out, err)
			}
			msgs = append(msgs, m)
		}
		for _, m := range msgs {
			if _, ok := m["jsonrpc"]; !ok {
				t.Fatalf("%q gave %q: no jsonrpc", line, out)
			}
			if e, ok := m["error"]; ok {
				var obj map[string]json.RawMessage
				if json.Unmarshal(e, &obj) != nil || obj["code"] == nil {
					t.Fatalf("%q gave %q: an error without a code", line, out)
				}
			}
		}
	})
}
