package fleet

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrBadName: a fleet or host name that cannot name streams and subjects.
var ErrBadName = errors.New("a fleet or host name is 1 to 32 letters, digits, '-' or '_'")

// CheckName says whether s can be a fleet's or a host's name: it becomes
// part of stream names and subjects as it is.
func CheckName(s string) error {
	if len(s) == 0 || len(s) > 32 {
		return fmt.Errorf("%q: %w", s, ErrBadName)
	}
	for _, c := range []byte(s) {
		if !plain(c) {
			return fmt.Errorf("%q: %w", s, ErrBadName)
		}
	}
	return nil
}

func plain(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// Names are the names of one fleet's JetStream streams, key-value buckets
// and subjects. Every implementation in the fleet derives its names from
// here, so two fleets on one NATS cluster never share one.
type Names struct{ fleet string }

// NewNames returns the names of the fleet called fleet (see CheckName).
func NewNames(fleet string) (Names, error) {
	if err := CheckName(fleet); err != nil {
		return Names{}, err
	}
	return Names{fleet: fleet}, nil
}

// Fleet is the fleet's name.
func (n Names) Fleet() string { return n.fleet }

// Stream is the name of the fleet's stream (or key-value bucket) of kind,
// such as "EVENTS": REXEC_<fleet>_EVENTS.
func (n Names) Stream(kind string) string { return "REXEC_" + n.fleet + "_" + kind }

// Subject is the subject rexec.<fleet>.<tokens...>. Each token must be one
// subject token already (see Token).
func (n Names) Subject(tokens ...string) string {
	return "rexec." + n.fleet + "." + strings.Join(tokens, ".")
}

// Token makes s one subject token: s itself when it is plain (letters,
// digits, '-', '_'), else "=" followed by s in unpadded base64url. Two
// different strings never give the same token, and no token holds '.',
// '*', '>' or white space.
func Token(s string) string {
	ok := s != ""
	for i := 0; ok && i < len(s); i++ {
		ok = plain(s[i])
	}
	if ok {
		return s
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
}

// FromToken is the string Token made tok from.
func FromToken(tok string) (string, error) {
	if rest, ok := strings.CutPrefix(tok, "="); ok {
		b, err := base64.RawURLEncoding.DecodeString(rest)
		return string(b), err
	}
	return tok, nil
}
