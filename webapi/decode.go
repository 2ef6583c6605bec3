package webapi

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// decodeStrict decodes one JSON object into v, the way a filtering proxy in
// front of rexec would have to read it to agree on what runs: member names
// match the fields exactly (never case-insensitively), a name given twice,
// an unknown name, text that is not valid UTF-8 (raw or as a lone surrogate
// escape) and anything after the object are refused, never repaired or
// skipped. Every error it returns is a *badRequest (as errors.As finds it)
// saying what is wrong.
func decodeStrict(body []byte, v any) error {
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		return seedAs("invalid_data", badRequestf("the body must be a JSON object, not null"))
	}
	if err := json.Unmarshal(body, v, json.RejectUnknownMembers(true)); err != nil {
		bad := jsonError(err)
		if bad.(*badRequest).field == "" {
			bad = seedAs("invalid_data", bad) // about the body as a whole
		}
		return bad
	}
	return nil
}

// jsonError turns a decoding error into a *badRequest with a message a user
// can act on. A value of the wrong kind names the top-level member it is in;
// JSON that does not parse is about the body as a whole.
func jsonError(err error) error {
	e := jsonMessage(err).(*badRequest)
	var syn *jsontext.SyntacticError
	var sem *json.SemanticError
	if !errors.As(err, &syn) && errors.As(err, &sem) {
		e.field = topMember(sem.JSONPointer)
	}
	return e
}

// topMember is the name of the top-level member that p is in, "" for the
// top itself.
func topMember(p jsontext.Pointer) string {
	if toks := pointerTokens(p); len(toks) > 0 {
		return toks[0]
	}
	return ""
}

// jsonMessage is jsonError's *badRequest, without its field.
func jsonMessage(err error) error {
	var syn *jsontext.SyntacticError
	var sem *json.SemanticError
	switch {
	case errors.As(err, &syn):
		where := fieldOf(syn.JSONPointer)
		switch {
		case errors.Is(syn.Err, jsontext.ErrDuplicateName):
			return badRequestf("field %s given twice", quoteLast(syn.JSONPointer))
		case strings.Contains(syn.Error(), "UTF-8"), strings.Contains(syn.Error(), "surrogate"):
			return badRequestf("%snot valid UTF-8 (at byte %d)", where, syn.ByteOffset)
		case strings.Contains(syn.Error(), "unexpected EOF"):
			return badRequestf("malformed JSON: unexpected end of body")
		case strings.Contains(syn.Error(), "after top-level value"):
			return badRequestf("unexpected data after the JSON object")
		}
		msg := strings.TrimPrefix(syn.Error(), "jsontext: ")
		return badRequestf("malformed JSON at byte %d: %s", syn.ByteOffset, msg)
	case errors.As(err, &sem):
		if errors.Is(sem.Err, json.ErrUnknownName) {
			return badRequestf("unknown field %s", quoteLast(sem.JSONPointer))
		}
		if sem.JSONPointer == "" {
			return badRequestf("the body must be a JSON object, not %s", kindName(sem.JSONKind))
		}
		if sem.GoType != nil && sem.JSONKind != 0 {
			if sem.Err != nil && strings.Contains(sem.Err.Error(), "out of range") {
				return badRequestf("%sout of range", fieldOf(sem.JSONPointer))
			}
			return badRequestf("%sexpected %s, got %s", fieldOf(sem.JSONPointer), goTypeName(sem.GoType), kindName(sem.JSONKind))
		}
		return badRequestf("%s%s", fieldOf(sem.JSONPointer), strings.TrimPrefix(sem.Error(), "json: "))
	}
	return badRequestf("malformed JSON: %s", err)
}

// fieldOf names the value at p, as `field "args" [2]: `, or "" at the top.
func fieldOf(p jsontext.Pointer) string {
	toks := pointerTokens(p)
	if len(toks) == 0 {
		return ""
	}
	s := fmt.Sprintf("field %q", toks[0])
	for _, t := range toks[1:] {
		s += "[" + t + "]"
	}
	return s + ": "
}

// quoteLast quotes the last name of p (the member given twice, or
// unknown), saying where it is when that is not the top object.
func quoteLast(p jsontext.Pointer) string {
	toks := pointerTokens(p)
	if len(toks) == 0 {
		return `""`
	}
	name := fmt.Sprintf("%q", toks[len(toks)-1])
	if len(toks) > 1 {
		name += " in " + strings.TrimSuffix(fieldOf(p[:strings.LastIndexByte(string(p), '/')]), ": ")
	}
	return name
}

// pointerTokens are the names and indexes of a JSON pointer, unescaped.
func pointerTokens(p jsontext.Pointer) []string {
	if p == "" {
		return nil
	}
	toks := strings.Split(strings.TrimPrefix(string(p), "/"), "/")
	for i, t := range toks {
		toks[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(t)
	}
	return toks
}

func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "a JSON value"
}

func goTypeName(t reflect.Type) string {
	if t == reflect.TypeFor[wireBool]() {
		return "true, false, 1 or 0"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64:
		return "a whole number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "an array of strings"
		}
		return "an array"
	case reflect.Map:
		if t.Elem().Kind() == reflect.String {
			return "an object of strings"
		}
		return "an object"
	case reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return goTypeName(t.Elem())
	}
	return t.String()
}

// decodeArgs reads the "args" of a run: an array of strings. For a client of
// the Cloud Storage Server (seed), as that server reads them: an array or
// an object (a PHP associative array), whose values, in order, are strings
// or numbers, a number standing for its text as written.
func decodeArgs(raw jsontext.Value, seed bool) ([]string, error) {
	if len(raw) == 0 || raw.Kind() == 'n' {
		return nil, nil
	}
	if !seed {
		var args []string
		err := json.Unmarshal(raw, &args)
		var sem *json.SemanticError
		if errors.As(err, &sem) {
			sem.JSONPointer = "/args" + sem.JSONPointer
		}
		if err != nil {
			return nil, jsonError(err)
		}
		return args, nil
	}
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	open, err := dec.ReadToken()
	if err != nil || (open.Kind() != '[' && open.Kind() != '{') {
		return nil, fieldErrorf("args", "field \"args\" must be an array (or an object), not %s", kindName(raw.Kind()))
	}
	var args []string
	for dec.PeekKind() != ']' && dec.PeekKind() != '}' {
		if open.Kind() == '{' {
			if _, err := dec.ReadToken(); err != nil { // the member's name
				return nil, jsonError(err)
			}
		}
		v, err := dec.ReadValue()
		if err != nil {
			return nil, jsonError(err)
		}
		switch v.Kind() {
		case '"':
			var a string
			if err := json.Unmarshal(v, &a); err != nil {
				return nil, jsonError(err)
			}
			args = append(args, a)
		case '0':
			args = append(args, string(v))
		default:
			return nil, fieldErrorf("args", "field \"args\" [%d]: expected a string or a number, got %s", len(args), kindName(v.Kind()))
		}
	}
	return args, nil
}
