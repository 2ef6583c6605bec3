package xmlrpc

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseCall(t *testing.T) {
	in := `<?xml version="1.0"?>
<!-- a script's call -->
<methodCall>
  <methodName>postInformation</methodName>
  <params>
    <param><value><string>externalscript</string></value></param>
    <param><value>bare &amp; string</value></param>
    <param><value><i4>42</i4></value></param>
    <param><value><int> -7 </int></value></param>
    <param><value><i8>9000000000</i8></value></param>
    <param><value><boolean>1</boolean></value></param>
    <param><value><double>2.5</double></value></param>
    <param><value><dateTime.iso8601>19980717T14:08:55</dateTime.iso8601></value></param>
    <param><value><base64>aGVs
bG8=</base64></value></param>
    <param><value><struct>
      <member><name>status</name><value><string>ok</string></value></member>
      <member><name>list</name><value><array><data><value><int>1</int></value><value>two</value></data></array></value></member>
      <member><name>none</name><value><nil/></value></member>
    </struct></value></param>
    <param><value></value></param>
  </params>
</methodCall>
`
	c, err := ParseCall(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Call{Method: "postInformation", Params: []any{"externalscript", "bare & string", int64(42), int64(-7), int64(9000000000), true, 2.5,
		time.Date(1998, 7, 17, 14, 8, 55, 0, time.UTC), []byte("hello"),
		map[string]any{"status": "ok", "list": []any{int64(1), "two"}, "none": nil}, ""}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %#v\nwant %#v", c, want)
	}
	// No params at all.
	if c, err := ParseCall(strings.NewReader(`<methodCall><methodName>getAllMachines</methodName></methodCall>`)); err != nil || c.Method != "getAllMachines" || c.Params != nil {
		t.Fatalf("%+v %v", c, err)
	}
}

// PHP's xmlrpc_encode_request declares ISO-8859-1: its bytes are read as
// Latin-1; an encoding neither UTF-8 nor Latin-1 is refused.
func TestParseCallEncodings(t *testing.T) {
	in := "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?><methodCall><methodName>m</methodName><params><param><value><string>caf\xe9 \xa3</string></value></param></params></methodCall>"
	c, err := ParseCall(strings.NewReader(in))
	if err != nil || len(c.Params) != 1 || c.Params[0] != "café £" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, enc := range []string{"UTF-8", "us-ascii"} {
		if _, err := ParseCall(strings.NewReader(`<?xml version="1.0" encoding="` + enc + `"?><methodCall><methodName>m</methodName></methodCall>`)); err != nil {
			t.Errorf("%s: %v", enc, err)
		}
	}
	if _, err := ParseCall(strings.NewReader(`<?xml version="1.0" encoding="shift_jis"?><methodCall><methodName>m</methodName></methodCall>`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("shift_jis: %v", err)
	}
}

func TestParseCallRefuses(t *testing.T) {
	deep := strings.Repeat("<value><array><data>", MaxDepth+1) + strings.Repeat("</data></array></value>", MaxDepth+1)
	many := "<value><array><data>" + strings.Repeat("<value><int>1</int></value>", MaxValues+1) + "</data></array></value>"
	for name, in := range map[string]string{
		"empty":             ``,
		"not xml":           `hello`,
		"other root":        `<methodResponse/>`,
		"no name":           `<methodCall><params/></methodCall>`,
		"empty name":        `<methodCall><methodName> </methodName></methodCall>`,
		"unclosed":          `<methodCall><methodName>m</methodName>`,
		"int overflow":      `<methodCall><methodName>m</methodName><params><param><value><int>3000000000</int></value></param></params></methodCall>`,
		"bad boolean":       `<methodCall><methodName>m</methodName><params><param><value><boolean>true</boolean></value></param></params></methodCall>`,
		"bad double":        `<methodCall><methodName>m</methodName><params><param><value><double>NaN</double></value></param></params></methodCall>`,
		"bad base64":        `<methodCall><methodName>m</methodName><params><param><value><base64>!!</base64></value></param></params></methodCall>`,
		"unknown type":      `<methodCall><methodName>m</methodName><params><param><value><object/></value></param></params></methodCall>`,
		"text and type":     `<methodCall><methodName>m</methodName><params><param><value>x<int>1</int></value></param></params></methodCall>`,
		"duplicate member":  `<methodCall><methodName>m</methodName><params><param><value><struct><member><name>a</name><value>1</value></member><member><name>a</name><value>2</value></member></struct></value></param></params></methodCall>`,
		"trailing element":  `<methodCall><methodName>m</methodName></methodCall><x/>`,
		"entity expansion":  `<!DOCTYPE x [<!ENTITY a "aaaa">]><methodCall><methodName>&a;</methodName></methodCall>`,
		"nested too deep":   `<methodCall><methodName>m</methodName><params><param>` + deep + `</param></params></methodCall>`,
		"too many values":   `<methodCall><methodName>m</methodName><params><param>` + many + `</param></params></methodCall>`,
		"control character": "<methodCall><methodName>m\x01</methodName></methodCall>",
	} {
		if c, err := ParseCall(strings.NewReader(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %+v, %v; want ErrMalformed", name, c, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	c := Call{Method: "m<&>", Params: []any{"a\nb\r\t<&>\"'", int64(1 << 40), false, -0.125, []any{}, map[string]any{}, nil,
		time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), []byte{0, 1, 2}}}
	var b bytes.Buffer
	if err := WriteCall(&b, c); err != nil {
		t.Fatal(err)
	}
	got, err := ParseCall(&b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("%#v, %v", got, err)
	}
}

func TestWriteFaultAndResponse(t *testing.T) {
	var b bytes.Buffer
	WriteFault(&b, FaultInvalidParams, "want 4 params <user, password, id, information>")
	if !strings.Contains(b.String(), "<fault><value><struct><member><name>faultCode</name><value><int>-32602</int></value></member>") ||
		!strings.Contains(b.String(), "&lt;user, password, id, information&gt;") {
		t.Fatal(b.String())
	}
	b.Reset()
	if err := WriteResponse(&b, map[string]any{"ok": true}); err != nil || !strings.Contains(b.String(), "<params><param><value><struct>") {
		t.Fatal(b.String(), err)
	}
	if err := WriteResponse(&b, struct{}{}); err == nil {
		t.Fatal("a struct{} was written")
	}
}

// FuzzParseCall: no input panics or hangs, and what parses writes back
// to a call that parses to the same.
func FuzzParseCall(f *testing.F) {
	f.Add(`<methodCall><methodName>postInformation</methodName><params><param><value><string>u</string></value></param><param><value><struct><member><name>a</name><value><array><data><value><i4>1</i4></value></data></array></value></member></struct></value></param></params></methodCall>`)
	f.Add(`<methodCall><methodName>getAllMachines</methodName></methodCall>`)
	f.Add("<?xml version=\"1.0\" encoding=\"iso-8859-1\"?><methodCall><methodName>m\xe9</methodName></methodCall>")
	f.Add(`<methodCall><methodName>m</methodName><params><param><value><base64>aGk=</base64></value></param><param><value><dateTime.iso8601>20260101T00:00:00</dateTime.iso8601></value></param><param><value><double>1e3</double></value></param><param><value><nil/></value></param></params></methodCall>`)
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseCall(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error of another kind: %v", err)
			}
			return
		}
		var b bytes.Buffer
		if err := WriteCall(&b, c); err != nil {
			t.Fatalf("a parsed call does not write: %v", err)
		}
		again, err := ParseCall(&b)
		if err != nil {
			t.Fatalf("a written call does not parse: %v\n%s", err, b.String())
		}
		if !reflect.DeepEqual(normalize(c), normalize(again)) {
			t.Fatalf("round trip:\n%#v\n%#v", c, again)
		}
	})
}

// normalize makes times comparable (the wire has seconds in UTC, no zone).
func normalize(c Call) Call {
	var norm func(v any) any
	norm = func(v any) any {
		switch v := v.(type) {
		case time.Time:
			return v.UTC().Truncate(time.Second).Format(time.RFC3339)
		case []any:
			out := make([]any, len(v))
			for i := range v {
				out[i] = norm(v[i])
			}
			return out
		case map[string]any:
			out := map[string]any{}
			for k, e := range v {
				out[k] = norm(e)
			}
			return out
		}
		return v
	}
	out := Call{Method: c.Method}
	for _, p := range c.Params {
		out.Params = append(out.Params, norm(p))
	}
	return out
}
