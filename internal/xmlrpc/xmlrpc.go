// Package xmlrpc reads XML-RPC method calls and writes their responses
// (http://xmlrpc.com/spec.md), the protocol scripts written for the Symbolic
// runner call back with. It is the protocol only: no HTTP, no methods.
//
// Values map onto Go as: <int>/<i4>/<i8> int64, <boolean> bool, <string>
// (or a bare value) string, <double> float64, <dateTime.iso8601> time.Time,
// <base64> []byte, <struct> map[string]any, <array> []any, <nil/> nil.
//
// A call is read with bounds (nesting depth, number of values), so that a
// hostile body costs at most what its size allows; the caller bounds the
// size.
package xmlrpc

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Call is a method call.
type Call struct {
	Method string
	Params []any
}

// Limits of a call.
const (
	MaxDepth  = 32     // nesting of arrays and structs
	MaxValues = 10_000 // values in a call, all levels
)

// ErrMalformed is the kind of every error of a call that is not XML-RPC.
var ErrMalformed = errors.New("malformed XML-RPC call")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// dateLayouts are the forms of <dateTime.iso8601> met in the wild: the
// spec's (no zone: taken as UTC), and ISO 8601 with dashes and a zone.
var dateLayouts = []string{"20060102T15:04:05", "2006-01-02T15:04:05", "2006-01-02T15:04:05Z07:00", "20060102T15:04:05Z07:00"}

// charsetReader reads the encodings XML-RPC clients declare besides UTF-8:
// PHP's xmlrpc_encode_request declares iso-8859-1 by default.
func charsetReader(label string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return input, nil
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1":
		return &latin1Reader{r: input}, nil
	}
	return nil, malformed("encoding %q: want UTF-8 or ISO-8859-1", truncate(label))
}

// latin1Reader turns ISO-8859-1 into UTF-8: each byte is the code point.
type latin1Reader struct {
	r       io.Reader
	pending []byte // converted, not yet read
}

func (l *latin1Reader) Read(p []byte) (int, error) {
	if len(l.pending) == 0 {
		var raw [512]byte
		m, err := l.r.Read(raw[:])
		if m == 0 {
			return 0, err
		}
		l.pending = l.pending[:0]
		for _, b := range raw[:m] {
			l.pending = utf8.AppendRune(l.pending, rune(b))
		}
	}
	n := copy(p, l.pending)
	l.pending = l.pending[n:]
	return n, nil
}

// ParseCall reads a <methodCall>.
func ParseCall(r io.Reader) (Call, error) {
	d := xml.NewDecoder(r)
	d.Strict = true
	d.CharsetReader = charsetReader
	p := &parser{d: d}
	call, err := p.call()
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			err = fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return Call{}, err
	}
	return call, nil
}

type parser struct {
	d      *xml.Decoder
	values int
}

// token is the decoder's next token; the document's end before the call's
// is an error.
func (p *parser) token() (xml.Token, error) {
	t, err := p.d.Token()
	if err == io.EOF {
		return nil, malformed("unexpected end of the document")
	}
	return t, err
}

// next returns the next start or end element, skipping whitespace,
// comments, processing instructions and directives; text that is not
// whitespace between elements is an error.
func (p *parser) next() (xml.Token, error) {
	for {
		t, err := p.token()
		if err != nil {
			return nil, err
		}
		switch t := t.(type) {
		case xml.StartElement, xml.EndElement:
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, malformed("unexpected text %q", truncate(string(t)))
			}
		}
	}
}

func (p *parser) start(name string) error {
	t, err := p.next()
	if err != nil {
		return err
	}
	if s, ok := t.(xml.StartElement); !ok || s.Name.Local != name {
		return malformed("want <%s>, got %s", name, describe(t))
	}
	return nil
}

func (p *parser) end(name string) error {
	t, err := p.next()
	if err != nil {
		return err
	}
	if e, ok := t.(xml.EndElement); !ok || e.Name.Local != name {
		return malformed("want </%s>, got %s", name, describe(t))
	}
	return nil
}

// text reads the character data up to the end of element name.
func (p *parser) text(name string) (string, error) {
	var b strings.Builder
	for {
		t, err := p.token()
		if err != nil {
			return "", err
		}
		switch t := t.(type) {
		case xml.CharData:
			if b.Len()+len(t) > 1<<24 {
				return "", malformed("<%s> too long", name)
			}
			b.Write(t)
		case xml.EndElement:
			if t.Name.Local != name {
				return "", malformed("want </%s>, got %s", name, describe(t))
			}
			return b.String(), nil
		case xml.StartElement:
			return "", malformed("unexpected %s in <%s>", describe(t), name)
		}
	}
}

func (p *parser) call() (Call, error) {
	if err := p.start("methodCall"); err != nil {
		return Call{}, err
	}
	if err := p.start("methodName"); err != nil {
		return Call{}, err
	}
	name, err := p.text("methodName")
	if err != nil {
		return Call{}, err
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return Call{}, malformed("empty <methodName>")
	}
	call := Call{Method: name}
	t, err := p.next()
	if err != nil {
		return Call{}, err
	}
	if s, ok := t.(xml.StartElement); ok && s.Name.Local == "params" {
		for {
			t, err := p.next()
			if err != nil {
				return Call{}, err
			}
			if e, ok := t.(xml.EndElement); ok && e.Name.Local == "params" {
				break
			}
			if s, ok := t.(xml.StartElement); !ok || s.Name.Local != "param" {
				return Call{}, malformed("want <param>, got %s", describe(t))
			}
			if err := p.start("value"); err != nil {
				return Call{}, err
			}
			v, err := p.value(1)
			if err != nil {
				return Call{}, err
			}
			call.Params = append(call.Params, v)
			if err := p.end("param"); err != nil {
				return Call{}, err
			}
		}
		if t, err = p.next(); err != nil {
			return Call{}, err
		}
	}
	if e, ok := t.(xml.EndElement); !ok || e.Name.Local != "methodCall" {
		return Call{}, malformed("want </methodCall>, got %s", describe(t))
	}
	// Nothing but space and comments may follow.
	for {
		t, err := p.d.Token()
		if err == io.EOF {
			return call, nil
		}
		if err != nil {
			return Call{}, err
		}
		switch t := t.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return Call{}, malformed("text after </methodCall>")
			}
		case xml.StartElement, xml.EndElement:
			return Call{}, malformed("%s after </methodCall>", describe(t))
		}
	}
}

// value reads what follows <value> up to and including </value>.
func (p *parser) value(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, malformed("values nested deeper than %d", MaxDepth)
	}
	if p.values++; p.values > MaxValues {
		return nil, malformed("more than %d values", MaxValues)
	}
	// A bare string, or whitespace before a typed element.
	var pending strings.Builder
	for {
		t, err := p.token()
		if err != nil {
			return nil, err
		}
		switch t := t.(type) {
		case xml.CharData:
			if pending.Len()+len(t) > 1<<24 {
				return nil, malformed("<value> too long")
			}
			pending.Write(t)
		case xml.EndElement:
			if t.Name.Local != "value" {
				return nil, malformed("want </value>, got %s", describe(t))
			}
			return pending.String(), nil // <value>text</value> is a string
		case xml.StartElement:
			if strings.TrimSpace(pending.String()) != "" {
				return nil, malformed("text and <%s> in one <value>", t.Name.Local)
			}
			v, err := p.typed(t.Name.Local, depth)
			if err != nil {
				return nil, err
			}
			return v, p.end("value")
		}
	}
}

func (p *parser) typed(kind string, depth int) (any, error) {
	switch kind {
	case "string":
		return p.text(kind)
	case "int", "i4", "i8":
		s, err := p.text(kind)
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || (kind != "i8" && (n < math.MinInt32 || n > math.MaxInt32)) {
			return nil, malformed("<%s>%s</%s> is not a %s", kind, truncate(s), kind, map[bool]string{true: "64-bit integer", false: "32-bit integer"}[kind == "i8"])
		}
		return n, nil
	case "boolean":
		s, err := p.text(kind)
		if err != nil {
			return nil, err
		}
		switch strings.TrimSpace(s) {
		case "1":
			return true, nil
		case "0":
			return false, nil
		}
		return nil, malformed("<boolean>%s</boolean>: want 0 or 1", truncate(s))
	case "double":
		s, err := p.text(kind)
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, malformed("<double>%s</double> is not a number", truncate(s))
		}
		return f, nil
	case "dateTime.iso8601":
		s, err := p.text(kind)
		if err != nil {
			return nil, err
		}
		s = strings.TrimSpace(s)
		for _, l := range dateLayouts {
			if t, err := time.Parse(l, s); err == nil {
				return t, nil
			}
		}
		return nil, malformed("<dateTime.iso8601>%s</dateTime.iso8601> is not a date", truncate(s))
	case "base64":
		s, err := p.text(kind)
		if err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
		if err != nil {
			return nil, malformed("<base64>: %v", err)
		}
		return b, nil
	case "nil":
		return nil, p.end("nil")
	case "array":
		if err := p.start("data"); err != nil {
			return nil, err
		}
		arr := []any{}
		for {
			t, err := p.next()
			if err != nil {
				return nil, err
			}
			if e, ok := t.(xml.EndElement); ok && e.Name.Local == "data" {
				break
			}
			if s, ok := t.(xml.StartElement); !ok || s.Name.Local != "value" {
				return nil, malformed("want <value> in <data>, got %s", describe(t))
			}
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		return arr, p.end("array")
	case "struct":
		m := map[string]any{}
		for {
			t, err := p.next()
			if err != nil {
				return nil, err
			}
			if e, ok := t.(xml.EndElement); ok && e.Name.Local == "struct" {
				return m, nil
			}
			if s, ok := t.(xml.StartElement); !ok || s.Name.Local != "member" {
				return nil, malformed("want <member> in <struct>, got %s", describe(t))
			}
			if err := p.start("name"); err != nil {
				return nil, err
			}
			name, err := p.text("name")
			if err != nil {
				return nil, err
			}
			if _, dup := m[name]; dup {
				return nil, malformed("member %q twice in a <struct>", truncate(name))
			}
			if err := p.start("value"); err != nil {
				return nil, err
			}
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			m[name] = v
			if err := p.end("member"); err != nil {
				return nil, err
			}
		}
	}
	return nil, malformed("unknown value type <%s>", truncate(kind))
}

func describe(t xml.Token) string {
	switch t := t.(type) {
	case xml.StartElement:
		return "<" + truncate(t.Name.Local) + ">"
	case xml.EndElement:
		return "</" + truncate(t.Name.Local) + ">"
	}
	return "text"
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// WriteResponse writes a <methodResponse> holding v.
func WriteResponse(w io.Writer, v any) error {
	var b bytes.Buffer
	b.WriteString(xml.Header + "<methodResponse><params><param>")
	if err := writeValue(&b, v, 0); err != nil {
		return err
	}
	b.WriteString("</param></params></methodResponse>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// Fault codes, after the specification for XML-RPC servers' fault codes
// (xmlrpc-epi): the kind of error, for the caller's program.
const (
	FaultParse         = -32700 // not well-formed XML, or not XML-RPC
	FaultNoMethod      = -32601 // requested method not found
	FaultInvalidParams = -32602 // invalid method parameters
	FaultInternal      = -32603 // internal XML-RPC error
	FaultApplication   = -32500 // application error
)

// WriteFault writes a <methodResponse> with a <fault>.
func WriteFault(w io.Writer, code int, msg string) error {
	var b bytes.Buffer
	b.WriteString(xml.Header + "<methodResponse><fault>")
	writeValue(&b, map[string]any{"faultCode": int64(code), "faultString": msg}, 0)
	b.WriteString("</fault></methodResponse>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// WriteCall writes a <methodCall> (for tests and clients).
func WriteCall(w io.Writer, c Call) error {
	var b bytes.Buffer
	b.WriteString(xml.Header + "<methodCall><methodName>")
	xml.EscapeText(&b, []byte(c.Method))
	b.WriteString("</methodName><params>")
	for _, p := range c.Params {
		b.WriteString("<param>")
		if err := writeValue(&b, p, 0); err != nil {
			return err
		}
		b.WriteString("</param>")
	}
	b.WriteString("</params></methodCall>\n")
	_, err := w.Write(b.Bytes())
	return err
}

func writeValue(b *bytes.Buffer, v any, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("xmlrpc: values nested deeper than %d", MaxDepth)
	}
	b.WriteString("<value>")
	switch v := v.(type) {
	case nil:
		b.WriteString("<nil/>")
	case string:
		b.WriteString("<string>")
		xml.EscapeText(b, []byte(v))
		b.WriteString("</string>")
	case bool:
		b.WriteString("<boolean>")
		if v {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
		b.WriteString("</boolean>")
	case int:
		return writeValueEnd(b, writeInt(b, int64(v)))
	case int64:
		return writeValueEnd(b, writeInt(b, v))
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return fmt.Errorf("xmlrpc: %v has no XML-RPC form", v)
		}
		b.WriteString("<double>" + strconv.FormatFloat(v, 'f', -1, 64) + "</double>")
	case time.Time:
		b.WriteString("<dateTime.iso8601>" + v.UTC().Format("20060102T15:04:05") + "</dateTime.iso8601>")
	case []byte:
		b.WriteString("<base64>" + base64.StdEncoding.EncodeToString(v) + "</base64>")
	case []any:
		b.WriteString("<array><data>")
		for _, e := range v {
			if err := writeValue(b, e, depth+1); err != nil {
				return err
			}
		}
		b.WriteString("</data></array>")
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("<struct>")
		for _, k := range keys {
			b.WriteString("<member><name>")
			xml.EscapeText(b, []byte(k))
			b.WriteString("</name>")
			if err := writeValue(b, v[k], depth+1); err != nil {
				return err
			}
			b.WriteString("</member>")
		}
		b.WriteString("</struct>")
	default:
		return fmt.Errorf("xmlrpc: a %T has no XML-RPC form", v)
	}
	b.WriteString("</value>")
	return nil
}

func writeInt(b *bytes.Buffer, n int64) error {
	if n < math.MinInt32 || n > math.MaxInt32 {
		b.WriteString("<i8>" + strconv.FormatInt(n, 10) + "</i8>")
	} else {
		b.WriteString("<int>" + strconv.FormatInt(n, 10) + "</int>")
	}
	return nil
}

func writeValueEnd(b *bytes.Buffer, err error) error {
	if err != nil {
		return err
	}
	b.WriteString("</value>")
	return nil
}
