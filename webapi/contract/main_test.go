// Package contract_test checks GET /openapi.json against a real server. It
// is a test binary of its own: the OpenAPI validator it links compiles its
// JSON Schema meta-schemas when the binary starts, which would slow every
// fake child that webapi's own tests start from their binary.
package contract_test

import (
	"testing"

	"github.com/rexec/rexec/internal/testchild"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	testchild.Main()
	goleak.VerifyTestMain(m, testchild.LeakOptions()...)
}
