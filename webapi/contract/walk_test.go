package contract_test

// The harness of the OpenAPI contract test (openapi_test.go in this folder): the document
// loaded with kin-openapi, requests sent to a real server with what was sent
// on the wire kept, every answer validated against the operation it answers,
// and the coverage of the document's answers counted.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// contract is the OpenAPI document and what the walk covered of it.
type contract struct {
	doc *openapi3.T

	mu      sync.Mutex
	covered map[string]int // coverKey: answers seen
}

// loadContract parses doc with kin-openapi and validates it as an OpenAPI
// 3.1 document.
func loadContract(t *testing.T, doc []byte) *contract {
	t.Helper()
	loader := openapi3.NewLoader()
	d, err := loader.LoadFromData(doc)
	if err != nil {
		t.Fatalf("loading the document: %v", err)
	}
	if !d.IsOpenAPI31OrLater() || d.OpenAPIMajorMinor() != "3.1" {
		t.Fatalf("openapi %q: want 3.1", d.OpenAPI)
	}
	if err := d.Validate(context.Background(), openapi3.EnableSchemaPatternValidation(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("the document is not valid: %v", err)
	}
	return &contract{doc: d, covered: map[string]int{}}
}

// coverKey names one documented answer: an operation ("GET /readyz"), a
// status and a media type of its content ("" for an answer without one).
func coverKey(op string, status int, media string) string {
	return fmt.Sprintf("%s|%d|%s", op, status, media)
}

// operations lists the document's operations as "METHOD /path".
func (c *contract) operations() []string {
	var ops []string
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	sort.Strings(ops)
	return ops
}

// documentedPath is the document's path of a pattern of the routing table:
// the same, but for "/{$}" (the root alone), which is "/", and a subtree
// such as "/console/" (every path under it), which is the document's path
// of one parameter under it ("/console/{file}"). A subtree the document
// has no such path for stays as it is (and is reported as undocumented).
func (c *contract) documentedPath(pattern string) string {
	if p, ok := strings.CutSuffix(pattern, "{$}"); ok {
		return p
	}
	if pattern == "/" || !strings.HasSuffix(pattern, "/") {
		return pattern
	}
	for path := range c.doc.Paths.Map() {
		rest, ok := strings.CutPrefix(path, pattern)
		if ok && strings.HasPrefix(rest, "{") && strings.HasSuffix(rest, "}") && !strings.Contains(rest, "/") {
			return path
		}
	}
	return pattern
}

// answers lists every documented answer, as coverKeys, with the answers to
// unknown paths (x-unknown-paths) under the operation "x-unknown-paths".
func (c *contract) answers(t *testing.T) []string {
	var keys []string
	add := func(op, code string, resp *openapi3.ResponseRef) {
		status, err := strconv.Atoi(code)
		if err != nil {
			t.Errorf("%s: response %q is not a status", op, code)
			return
		}
		if len(resp.Value.Content) == 0 {
			keys = append(keys, coverKey(op, status, ""))
		}
		for media := range resp.Value.Content {
			keys = append(keys, coverKey(op, status, media))
		}
	}
	for _, op := range c.operations() {
		for code, resp := range c.operation(t, op).Operation.Responses.Map() {
			add(op, code, resp)
		}
	}
	for code, resp := range c.unknownPaths(t).Operation.Responses.Map() {
		add("x-unknown-paths", code, resp)
	}
	sort.Strings(keys)
	return keys
}

// operation is the route of the documented operation op, "METHOD /path".
func (c *contract) operation(t *testing.T, op string) *routers.Route {
	t.Helper()
	method, path, _ := strings.Cut(op, " ")
	item := c.doc.Paths.Value(path)
	if item == nil {
		t.Fatalf("the document has no path %s", path)
	}
	o := item.GetOperation(method)
	if o == nil {
		t.Fatalf("the document has no operation %s", op)
	}
	return &routers.Route{Spec: c.doc, Server: nil, Path: path, PathItem: item, Method: method, Operation: o}
}

// unknownPaths is the answer to paths no operation has (the extension
// x-unknown-paths), as an operation of its own.
func (c *contract) unknownPaths(t *testing.T) *routers.Route {
	t.Helper()
	var ext struct {
		Responses map[string]struct {
			Ref string `json:"$ref"`
		} `json:"responses"`
	}
	remarshal(t, c.doc.Extensions["x-unknown-paths"], &ext)
	responses := openapi3.NewResponses()
	responses.Delete("default")
	for code, r := range ext.Responses {
		name, ok := strings.CutPrefix(r.Ref, "#/components/responses/")
		ref := c.doc.Components.Responses[name]
		if !ok || ref == nil {
			t.Fatalf("x-unknown-paths: response %s: no component %q", code, r.Ref)
		}
		responses.Set(code, ref)
	}
	if responses.Len() == 0 {
		t.Fatal("x-unknown-paths documents no answer")
	}
	op := &openapi3.Operation{Responses: responses}
	return &routers.Route{Spec: c.doc, Path: "/{unknown}", PathItem: &openapi3.PathItem{Get: op}, Method: http.MethodGet, Operation: op}
}

// schemaRef resolves a "#/components/schemas/NAME" reference, as the
// document's extensions hold them.
func (c *contract) schemaRef(t *testing.T, ref string) *openapi3.Schema {
	t.Helper()
	name, ok := strings.CutPrefix(ref, "#/components/schemas/")
	s := c.doc.Components.Schemas[name]
	if !ok || s == nil || s.Value == nil {
		t.Fatalf("no schema %q", ref)
	}
	return s.Value
}

func remarshal(t *testing.T, from, to any) {
	t.Helper()
	b, err := json.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, to); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

// visit validates v against s as OpenAPI 3.1 (JSON Schema 2020-12) does.
func visit(s *openapi3.Schema, v any) error {
	return s.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse(), openapi3.MultiErrors())
}

// A call is a request of the walk.
type call struct {
	op     string   // the documented operation it exercises: "POST /process"
	method string   // "": the operation's
	path   string   // the path and query sent
	body   string   // "" none
	header []string // name, value pairs
	key    string   // "Authorization: Bearer" credential; "" none
	// valid: the request is one the document describes as valid, and is
	// validated against it too.
	valid bool
}

// exchange is one request and its answer.
type exchange struct {
	call
	req  *http.Request
	resp *http.Response
	head http.Header // the response head as sent (Trailer included)
	body []byte      // read by finish
	t    *testing.T
}

// json decodes the body as a JSON object.
func (ex *exchange) json() map[string]any {
	ex.t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ex.body, &m); err != nil {
		ex.t.Fatalf("%s: body %q is not JSON: %v", ex.op, ex.body, err)
	}
	return m
}

// recConn keeps the first bytes it reads: the response head, as sent.
type recConn struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if c.buf.Len() < 64<<10 {
		c.buf.Write(p[:n])
	}
	c.mu.Unlock()
	return n, err
}

// rawHead is the first response head c read.
func (c *recConn) rawHead() (http.Header, error) {
	c.mu.Lock()
	b := bytes.Clone(c.buf.Bytes())
	c.mu.Unlock()
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
	if _, err := tp.ReadLine(); err != nil { // the status line
		return nil, err
	}
	h, err := tp.ReadMIMEHeader()
	return http.Header(h), err
}

// walkClient sends each request on a connection of its own, whose reads it
// keeps: Go's client takes the Trailer header out of a response it parses.
var walkClient = &http.Client{
	Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &recConn{Conn: c}, nil
		},
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// open sends cl to base and checks the answer's status and head against the
// document; the body is left to read (finish, or the caller).
func (c *contract) open(t *testing.T, ctx context.Context, base string, cl call, status int) *exchange {
	t.Helper()
	method := cl.method
	if method == "" {
		method, _, _ = strings.Cut(cl.op, " ")
	}
	var body io.Reader
	if cl.body != "" {
		body = strings.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+cl.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if cl.key != "" {
		req.Header.Set("Authorization", "Bearer "+cl.key)
	}
	for i := 0; i+1 < len(cl.header); i += 2 {
		if cl.header[i] == "Host" {
			req.Host = cl.header[i+1]
		} else {
			req.Header.Set(cl.header[i], cl.header[i+1])
		}
	}
	if cl.valid {
		c.validateRequest(t, cl, req)
	}
	var conn *recConn
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { conn, _ = info.Conn.(*recConn) },
	}))
	resp, err := walkClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, cl.path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	head := resp.Header
	if conn != nil {
		if head, err = conn.rawHead(); err != nil {
			t.Fatalf("%s %s: the head as sent: %v", method, cl.path, err)
		}
	}
	ex := &exchange{call: cl, req: req, resp: resp, head: head, t: t}
	if resp.StatusCode != status {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: status %d, want %d: %s", method, cl.path, resp.StatusCode, status, b)
	}
	if method == http.MethodHead {
		return ex
	}
	c.validateResponse(t, ex, false)
	return ex
}

// finish reads the rest of ex's body and validates the whole answer: the
// body (each line of NDJSON) and the trailers.
func (c *contract) finish(t *testing.T, ex *exchange) *exchange {
	t.Helper()
	b, err := io.ReadAll(ex.resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", ex.op, ex.path, err)
	}
	ex.body = b
	c.validateResponse(t, ex, true)
	return ex
}

// do sends cl and validates the whole answer.
func (c *contract) do(t *testing.T, base string, cl call, status int) *exchange {
	t.Helper()
	return c.finish(t, c.open(t, context.Background(), base, cl, status))
}

// templateParams matches path (escaped, perhaps with a query) against the
// path template, and returns its path parameters.
func templateParams(template, path string) (map[string]string, bool) {
	path, _, _ = strings.Cut(path, "?")
	want, got := strings.Split(template, "/"), strings.Split(path, "/")
	if len(want) != len(got) {
		return nil, false
	}
	params := map[string]string{}
	for i, w := range want {
		if name, ok := strings.CutPrefix(w, "{"); ok && strings.HasSuffix(name, "}") && got[i] != "" {
			params[strings.TrimSuffix(name, "}")] = got[i]
		} else if w != got[i] {
			return nil, false
		}
	}
	return params, true
}

func (c *contract) requestInput(t *testing.T, ex call, req *http.Request) *openapi3filter.RequestValidationInput {
	t.Helper()
	var route *routers.Route
	params := map[string]string{}
	if ex.op == "x-unknown-paths" {
		route = c.unknownPaths(t)
	} else {
		route = c.operation(t, ex.op)
		var ok bool
		if params, ok = templateParams(route.Path, req.URL.EscapedPath()); !ok {
			t.Fatalf("%s: %s is not a path of %s", ex.op, req.URL.Path, route.Path)
		}
	}
	return &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
}

// validateRequest checks a request the walk sends as valid against the
// document: its parameters and body.
func (c *contract) validateRequest(t *testing.T, cl call, req *http.Request) {
	t.Helper()
	if cl.body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	clone := req.Clone(req.Context())
	clone.Body = io.NopCloser(strings.NewReader(cl.body))
	if err := openapi3filter.ValidateRequest(context.Background(), c.requestInput(t, cl, clone)); err != nil {
		t.Errorf("%s: a request the walk sends as valid does not match the document: %v", cl.op, err)
	}
}

// validateResponse validates ex's answer against the document: that its
// status is one the operation lists, its headers, its media type and, once
// whole (read), its body and trailers. It counts the answer as covered.
func (c *contract) validateResponse(t *testing.T, ex *exchange, read bool) {
	t.Helper()
	in := c.requestInput(t, ex.call, ex.req)
	status := ex.resp.StatusCode
	ref := in.Route.Operation.Responses.Status(status)
	if ref == nil {
		t.Errorf("%s answered %d, which the document does not list for it", ex.op, status)
		return
	}
	resp := ref.Value
	media := ""
	if len(resp.Content) > 0 {
		mt := resp.Content.Get(ex.head.Get("Content-Type"))
		for k, v := range resp.Content {
			if v == mt {
				media = k
			}
		}
		if media == "" {
			t.Errorf("%s %d: Content-Type %q is none of the document's", ex.op, status, ex.head.Get("Content-Type"))
			return
		}
	}
	// The streams' bodies are validated here, a line or an event at a
	// time; the Prometheus protobuf format is no JSON to validate.
	custom := media == "application/x-ndjson" || media == "text/event-stream" || media == "application/vnd.google.protobuf"
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: ex.head,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: !read || custom}}
	out.SetBodyBytes(ex.body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s: the answer does not match the document: %v\nhead: %v\nbody: %.2000s", ex.op, ex.path, err, ex.head, ex.body)
	}
	if read {
		if media == "application/x-ndjson" {
			c.validateNDJSON(t, ex, resp.Content[media].Schema.Value)
		}
		c.validateTrailers(t, ex, resp, media)
	}
	c.cover(coverKey(ex.op, status, media))
}

func (c *contract) cover(key string) {
	c.mu.Lock()
	c.covered[key]++
	c.mu.Unlock()
}

// validateNDJSON validates every line of an NDJSON body against the line
// schema, and checks that the end object comes last, once.
func (c *contract) validateNDJSON(t *testing.T, ex *exchange, line *openapi3.Schema) {
	t.Helper()
	if len(ex.body) == 0 || ex.body[len(ex.body)-1] != '\n' {
		t.Errorf("%s: NDJSON body does not end with a newline: %q", ex.op, ex.body)
	}
	lines := strings.Split(strings.TrimSuffix(string(ex.body), "\n"), "\n")
	for i, l := range lines {
		var v any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Errorf("%s: NDJSON line %d is not JSON: %q", ex.op, i, l)
			continue
		}
		if err := visit(line, v); err != nil {
			t.Errorf("%s: NDJSON line %d %s does not match the line schema: %v", ex.op, i, l, err)
		}
		_, end := v.(map[string]any)["reason"]
		if end != (i == len(lines)-1) {
			t.Errorf("%s: NDJSON line %d %s: the end object comes last, and only last", ex.op, i, l)
		}
	}
}

// validateTrailers checks the trailers of a whole answer against the
// response's x-trailers: the Trailer header names exactly those, each one
// sent matches its schema, the required ones are there, and no other is.
// An event stream has none: x-trailers are the response's other forms'.
func (c *contract) validateTrailers(t *testing.T, ex *exchange, resp *openapi3.Response, media string) {
	t.Helper()
	documented := map[string]*openapi3.Header{}
	if x, ok := resp.Extensions["x-trailers"]; ok && media != "text/event-stream" {
		remarshal(t, x, &documented)
	}
	var announced []string
	for _, v := range ex.head.Values("Trailer") {
		for name := range strings.SplitSeq(v, ",") {
			announced = append(announced, http.CanonicalHeaderKey(strings.TrimSpace(name)))
		}
	}
	var names []string
	for name := range documented {
		names = append(names, http.CanonicalHeaderKey(name))
	}
	slices.Sort(announced)
	slices.Sort(names)
	if !slices.Equal(announced, names) {
		t.Errorf("%s %d: the Trailer header announces %q, x-trailers documents %q", ex.op, ex.resp.StatusCode, announced, names)
	}
	for name := range ex.resp.Trailer {
		if _, ok := documented[name]; !ok {
			t.Errorf("%s %d: trailer %s is not documented", ex.op, ex.resp.StatusCode, name)
		}
	}
	for name, h := range documented {
		v := ex.resp.Trailer.Get(name)
		if v == "" {
			if h.Required {
				t.Errorf("%s %d: required trailer %s is missing (trailers %v)", ex.op, ex.resp.StatusCode, name, ex.resp.Trailer)
			}
			continue
		}
		s := h.Schema.Value
		if h.Schema.Ref != "" {
			s = c.schemaRef(t, h.Schema.Ref)
		}
		var value any = v
		if s.Type.Is("integer") || s.Type.Is("number") {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Errorf("%s: trailer %s: %q is not a number", ex.op, name, v)
				continue
			}
			value = n
		}
		if err := visit(s, value); err != nil {
			t.Errorf("%s: trailer %s: %q does not match its schema: %v", ex.op, name, v, err)
		}
	}
}

// sseFields is one Server-Sent Event as the document's schema has it:
// its fields id, event and data.
type sseFields map[string]any

// readEvent reads the next event of an event stream and validates it
// against the operation's event schema, its data against the data's
// contentSchema; it returns the data when it is a JSON object. Comments
// may only be the ones the document names.
func (c *contract) readEvent(t *testing.T, ex *exchange, br *bufio.Reader) (sseFields, map[string]any) {
	t.Helper()
	e := sseFields{}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: the event stream ended: %v", ex.op, err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if len(e) > 0 {
				return e, c.validateEvent(t, ex, e)
			}
		case strings.HasPrefix(line, ":"):
			if line != ": rexec events" && line != ": rexec output" && line != ": ping" {
				t.Errorf("%s: undocumented comment %q", ex.op, line)
			}
		default:
			name, value, ok := strings.Cut(line, ": ")
			if !ok {
				t.Fatalf("%s: not an event field: %q", ex.op, line)
			}
			if _, dup := e[name]; dup {
				t.Errorf("%s: field %s twice in one event (data spans one line)", ex.op, name)
			}
			e[name] = value
		}
	}
}

func (c *contract) validateEvent(t *testing.T, ex *exchange, e sseFields) map[string]any {
	t.Helper()
	schema := c.operation(t, ex.op).Operation.Responses.Status(200).Value.Content["text/event-stream"].Schema.Value
	if err := visit(schema, map[string]any(e)); err != nil {
		t.Errorf("%s: event %v does not match the event schema: %v", ex.op, e, err)
		return nil
	}
	var data any
	if err := json.Unmarshal([]byte(e["data"].(string)), &data); err != nil {
		t.Errorf("%s: event data %q is not JSON", ex.op, e["data"])
		return nil
	}
	matched := 0
	for _, branch := range schema.OneOf {
		if visit(branch.Value, map[string]any(e)) != nil {
			continue
		}
		matched++
		cs := branch.Value.Properties["data"].Value.ContentSchema
		s := cs.Value
		if cs.Ref != "" {
			s = c.schemaRef(t, cs.Ref)
		}
		if err := visit(s, data); err != nil {
			t.Errorf("%s: the data of event %v does not match its contentSchema: %v", ex.op, e, err)
		}
	}
	if matched != 1 {
		t.Errorf("%s: event %v matches %d kinds of event", ex.op, e, matched)
	}
	m, _ := data.(map[string]any)
	return m
}

// webSocket is the operation's x-websocket: its messages' schemas and close
// codes.
type webSocket struct {
	client, server *openapi3.Schema
	closeCodes     map[string]string
}

func (c *contract) webSocket(t *testing.T, op string) webSocket {
	t.Helper()
	var x struct {
		ClientMessage struct {
			Ref string `json:"$ref"`
		} `json:"clientMessage"`
		ServerMessage struct {
			Ref string `json:"$ref"`
		} `json:"serverMessage"`
		CloseCodes map[string]string `json:"closeCodes"`
	}
	ext, ok := c.operation(t, op).Operation.Extensions["x-websocket"]
	if !ok {
		t.Fatalf("%s has no x-websocket", op)
	}
	remarshal(t, ext, &x)
	return webSocket{client: c.schemaRef(t, x.ClientMessage.Ref), server: c.schemaRef(t, x.ServerMessage.Ref), closeCodes: x.CloseCodes}
}

// checkCoverage fails the test for every documented answer that the walk
// did not see and the list of the unreachable does not name, and for every
// entry of that list that names no documented answer or one the walk saw.
func (c *contract) checkCoverage(t *testing.T, unreachable []unreached) {
	t.Helper()
	used := make([]bool, len(unreachable))
	answers, seen, unseen := c.answers(t), 0, 0
	defer func() {
		t.Logf("%d documented answers, %d of them exercised, %d listed as unreachable", len(answers), seen, unseen)
	}()
	for _, key := range answers {
		if c.covered[key] > 0 {
			seen++
		}
		listed := -1
		for i, u := range unreachable {
			if u.matches(key) {
				listed, used[i] = i, true
			}
		}
		if listed >= 0 && c.covered[key] == 0 {
			unseen++
		}
		switch seen := c.covered[key] > 0; {
		case !seen && listed < 0:
			t.Errorf("documented but never exercised: %s", key)
		case seen && listed >= 0 && !unreachable[listed].wildcard():
			t.Errorf("exercised, yet listed as unreachable (%s): %s", unreachable[listed].why, key)
		}
	}
	for i, u := range unreachable {
		if !used[i] {
			t.Errorf("listed as unreachable, but not documented: %s %s %s", u.op, u.status, u.media)
		}
	}
}

// unreached names documented answers the walk cannot reach, and why.
type unreached struct {
	op, status, media string // "*": any
	why               string
}

func (u unreached) wildcard() bool { return u.op == "*" || u.media == "*" }

func (u unreached) matches(key string) bool {
	op, rest, _ := strings.Cut(key, "|")
	status, media, _ := strings.Cut(rest, "|")
	return (u.op == "*" || u.op == op) && u.status == status && (u.media == "*" || u.media == media)
}
