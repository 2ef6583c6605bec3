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
// skipped. Every error it returns is a *badRequest saying what is wrong.
func decodeStrict(body []byte, v any) error {
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		return badRequestf("the body must be a JSON object, not null")
	}
	if err := json.Unmarshal(body, v, json.RejectUnknownMembers(true)); err != nil {
		return jsonError(err)
	}
	return nil
}

// jsonError turns a decoding error into a message a user can act on.
func jsonError(err error) error {
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
