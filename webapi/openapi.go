package webapi

import (
	"bytes"
	_ "embed"
	"errors"
	"net/http"
	"strconv"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/rexec/rexec/internal/buildinfo"
)

// GET /openapi.json: the OpenAPI 3.1 document of the whole HTTP API, every
// path, method, request field, status, header and trailer, written by hand
// in openapi.json. The contract test (webapi/contract) walks a real server through every
// operation it documents and validates each answer against it, and checks
// it against the routing table (routes.go), so that it cannot drift from the
// code.
//
// It is an endpoint like the others (Host and Origin checks, the admin
// token), and a guest key may read it too (authorize).

const openAPIPath = "/openapi.json"

//go:embed openapi.json
var openAPIDocument []byte

// servedOpenAPI is the document as served: with this build's version as
// info.version, made once.
var servedOpenAPI = sync.OnceValue(func() []byte {
	version := buildinfo.Read().Version
	if version == "" {
		return openAPIDocument
	}
	doc, err := withInfoVersion(openAPIDocument, version)
	if err != nil {
		return openAPIDocument // the contract test sees to it that this never happens
	}
	return doc
})

// withInfoVersion returns doc with the value of info.version replaced by
// version, every other byte as it was.
func withInfoVersion(doc []byte, version string) ([]byte, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(doc))
	for {
		if _, err := dec.ReadToken(); err != nil {
			return nil, err
		}
		if dec.StackPointer() != "/info/version" {
			continue
		}
		// The member's name was read: its value comes next.
		if dec.PeekKind() != '"' {
			return nil, errors.New("info.version is not a string")
		}
		raw, err := dec.ReadValue()
		if err != nil {
			return nil, err
		}
		end := int(dec.InputOffset())
		quoted, err := jsontext.AppendQuote(nil, version)
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, len(doc)+len(quoted))
		out = append(out, doc[:end-len(raw)]...)
		out = append(out, quoted...)
		return append(out, doc[end:]...), nil
	}
}

// handleOpenAPI is GET /openapi.json.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	if !probeMethod(w, r) {
		return
	}
	doc := servedOpenAPI()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(doc)))
	w.WriteHeader(http.StatusOK)
	w.Write(doc)
}
