package plugin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"unicode/utf8"
)

// MaxLine bounds one message of a plugin: a longer line is a protocol error
// that ends its process.
const MaxLine = 1 << 20

// A ProtocolError is a line of a plugin's stdout that is not a message: not
// JSON, or longer than MaxLine. It ends the process; Start is the line's
// beginning, to show the author what the plugin printed (debug output on
// stdout is the usual cause).
type ProtocolError struct {
	Why   string
	Start string // at most startLen bytes of the line, valid UTF-8
}

// startLen is how much of a bad line a ProtocolError keeps.
const startLen = 200

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("plugin protocol error: %s (the line starts %q); a plugin writes only JSON-RPC messages to stdout, one a line, and its logs to stderr",
		e.Why, e.Start)
}

func protocolError(why string, line []byte) *ProtocolError {
	if len(line) > startLen {
		line = line[:startLen]
	}
	return &ProtocolError{Why: why, Start: string(bytes.ToValidUTF8(line, []byte("\uFFFD")))}
}

// lineChannel is a JSON-RPC channel over a plugin's stdin and stdout: one
// message a line, both ways (the jrpc2 channel.Channel interface). What it
// receives it reads as the Serverboards seed writes it: a message without
// "jsonrpc" is taken as 2.0, and an error that is only a string as an
// error object with that message.
type lineChannel struct {
	r  *bufio.Reader
	wc io.WriteCloser
	// onBad, when set, is called by Recv before it returns a
	// *ProtocolError: the reader stops there.
	onBad func()
	// calls, when set, learns of each call Send writes and each answer
	// Recv reads.
	calls *callTable

	wmu sync.Mutex // one Send at a time, whole lines
}

func newLineChannel(r io.Reader, wc io.WriteCloser) *lineChannel {
	return &lineChannel{r: bufio.NewReaderSize(r, 64<<10), wc: wc}
}

// Send writes msg and a newline. jrpc2 encodes messages compactly, so msg
// holds no newline of its own.
func (c *lineChannel) Send(msg []byte) error {
	if c.calls != nil {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		// A call (a request with an ID): it waits for its answer. A
		// notification has no ID, an answer to a callback no method.
		if json.Unmarshal(msg, &m) == nil && m.Method != "" && len(m.ID) > 0 {
			c.calls.sent(string(m.ID))
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	buf := make([]byte, 0, len(msg)+1)
	buf = append(append(buf, msg...), '\n')
	_, err := c.wc.Write(buf)
	return err
}

// Recv returns the next message, normalised; blank lines are skipped.
func (c *lineChannel) Recv() ([]byte, error) {
	for {
		line, err := c.readLine()
		if err != nil {
			return nil, err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		msg, err := normalize(line)
		if err != nil && c.onBad != nil {
			c.onBad()
		}
		if err == nil && c.calls != nil {
			c.calls.answered(msg)
		}
		return msg, err
	}
}

// callTable pairs each call in flight with the plugin's answer to it, by
// its ID, for the one case jrpc2's client gets wrong: it hands an answer to
// its caller on a goroutine of its own, so the end of the plugin's stdout
// right behind the answer (a one-shot script answers and exits) can stop
// the client, and fail the call, before the answer is handed over. The
// caller then takes the answer from here.
//
// A caller learns its call's ID by holding sendMu from before the call
// until Send has written the request (see proc.call).
type callTable struct {
	sendMu sync.Mutex
	slot   *string // the ID of the call sendMu's holder is making, once sent

	mu      sync.Mutex
	answers map[string]json.RawMessage // by ID, every call in flight: nil until answered
}

// begin starts a call: until Send has written it, or end, no other call
// is sent. The call's ID is in *id once sent.
func (t *callTable) begin(id *string) {
	t.sendMu.Lock()
	t.slot = id
}

// sent records a call written by Send, made by sendMu's holder.
func (t *callTable) sent(id string) {
	t.mu.Lock()
	if t.answers == nil {
		t.answers = map[string]json.RawMessage{}
	}
	t.answers[id] = nil
	t.mu.Unlock()
	if t.slot != nil {
		*t.slot = id
		t.slot = nil
		t.sendMu.Unlock()
	}
}

// answered keeps msg's answers (msg is a normalised message or batch) to
// calls in flight.
func (t *callTable) answered(msg []byte) {
	var one struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	keep := func(raw json.RawMessage) {
		if json.Unmarshal(raw, &one) != nil || one.Method != "" || len(one.ID) == 0 {
			return
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if a, ok := t.answers[string(one.ID)]; ok && a == nil {
			t.answers[string(one.ID)] = raw
		}
	}
	if msg[0] != '[' {
		keep(msg)
		return
	}
	var batch []json.RawMessage
	json.Unmarshal(msg, &batch)
	for _, raw := range batch {
		keep(raw)
	}
}

// end ends the call that began with id (empty if it was never sent) and
// returns the plugin's answer to it, nil if none was read.
func (t *callTable) end(id string) json.RawMessage {
	if id == "" {
		// Never sent: the client had stopped, or the params did not
		// encode.
		t.slot = nil
		t.sendMu.Unlock()
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.answers[id]
	delete(t.answers, id)
	return a
}

// readLine reads one line, without its newline, of at most MaxLine bytes.
// A last line without a newline counts; the end of the output is io.EOF.
func (c *lineChannel) readLine() ([]byte, error) {
	var line []byte
	for {
		part, err := c.r.ReadSlice('\n')
		if len(line)+len(part) > MaxLine+1 { // +1: the newline
			if c.onBad != nil {
				c.onBad()
			}
			return nil, protocolError(fmt.Sprintf("a line longer than %d bytes", MaxLine), append(line, part...))
		}
		line = append(line, part...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		}
		return nil, err
	}
}

func (c *lineChannel) Close() error { return c.wc.Close() }

// normalize checks that line is a JSON-RPC message, or a batch of them, and
// makes it one that jrpc2 takes: "jsonrpc":"2.0" where it is missing, and
// an error that is a string, or an object without a code, as an error
// object of code -32000 (a server error).
func normalize(line []byte) ([]byte, error) {
	if !utf8.Valid(line) {
		return nil, protocolError("a line that is not UTF-8", line)
	}
	if !json.Valid(line) {
		return nil, protocolError("a line that is not JSON", line)
	}
	if line[0] == '[' {
		var batch []json.RawMessage
		if json.Unmarshal(line, &batch) != nil || len(batch) == 0 {
			return nil, protocolError("a line that is not a JSON-RPC message", line)
		}
		for i, m := range batch {
			n, err := normalizeOne(m)
			if err != nil {
				return nil, err
			}
			batch[i] = n
		}
		return json.Marshal(batch)
	}
	return normalizeOne(line)
}

// relaxedCode is the code of an error a plugin gave without one.
const relaxedCode = -32000

func normalizeOne(msg []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if json.Unmarshal(msg, &m) != nil || m == nil {
		return nil, protocolError("a line that is not a JSON-RPC message (a JSON object)", msg)
	}
	changed := false
	if _, ok := m["jsonrpc"]; !ok {
		m["jsonrpc"] = json.RawMessage(`"2.0"`)
		changed = true
	}
	if raw, ok := m["error"]; ok && !bytes.Equal(raw, []byte("null")) {
		var text string
		var obj map[string]json.RawMessage
		switch {
		case json.Unmarshal(raw, &text) == nil:
			m["error"], _ = json.Marshal(map[string]any{"code": relaxedCode, "message": text})
			changed = true
		case json.Unmarshal(raw, &obj) == nil && obj != nil:
			if _, ok := obj["code"]; !ok {
				obj["code"] = json.RawMessage(fmt.Sprint(relaxedCode))
				m["error"], _ = json.Marshal(obj)
				changed = true
			}
		default: // a number, say: keep it as its text
			m["error"], _ = json.Marshal(map[string]any{"code": relaxedCode, "message": string(raw)})
			changed = true
		}
		if _, ok := m["result"]; ok { // a seed plugin may send both; the error wins
			delete(m, "result")
		}
	} else if ok && bytes.Equal(raw, []byte("null")) {
		delete(m, "error") // "error": null beside a result
		changed = true
	}
	if !changed {
		return msg, nil
	}
	return json.Marshal(m)
}
