// Package contract_test checks GET /openapi.json against a real server. It
// is a test binary of its own: the OpenAPI validator it links compiles its
// JSON Schema meta-schemas when the binary starts, which would slow every
// fake child that webapi's own tests start from their binary.
package contract_test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/rexec/rexec/internal/testchild"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	testchild.Main()
	goleak.VerifyTestMain(m, testchild.LeakOptions()...)
}

// XML bodies (Symbolic's XML-RPC callback) are strings to the document;
// the walk checks that they are well-formed XML. The web console's page and
// files are strings too.
func init() {
	for _, media := range []string{"text/html", "text/javascript", "text/css"} {
		openapi3filter.RegisterBodyDecoder(media, openapi3filter.PlainBodyDecoder)
	}
	openapi3filter.RegisterBodyDecoder("text/xml", func(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		d := xml.NewDecoder(bytes.NewReader(b))
		for {
			if _, err := d.Token(); err == io.EOF {
				return string(b), nil
			} else if err != nil {
				return nil, fmt.Errorf("not well-formed XML: %w", err)
			}
		}
	})
}
