package webapi

import (
	"context"
	"net/http"
)

// Who asked: the identity a request carries, recorded with the runs it
// starts (GET /process, the run history) and never a secret.
//
//   - a guest key: the guest's id;
//   - the admin token, or no key, over a connection whose client
//     certificate verified (--tls-client-ca): the certificate's subject;
//   - the admin token otherwise, or a server without authentication: "".

type subjectKey struct{}

// apiKeyHeader carries a key as the Cloud Storage Server /scripts SDK sends
// it: the admin token or a guest key, as "Authorization: Bearer" does.
//
// That SDK sends the key only on the first request of a connection it keeps
// alive, because its server remembers the identity per connection. rexec
// checks every request instead, and answers a request whose key came in
// this header with "Connection: close": the SDK then opens a new connection
// for its next call, and sends the key again. (Remembering identities per
// connection would save the handshakes, at the price of a second way to be
// authenticated.)
const apiKeyHeader = "X-APIKey"

// keySource is where a request's key came from (credential).
type keySource uint8

const (
	fromNowhere keySource = iota
	fromBearer
	fromAPIKeyHeader
	fromURL
)

// authRequired says whether requests must prove who they are: with a token
// or with mutual TLS.
func (s *Server) authRequired() bool { return s.cfg.Token != "" || s.cfg.MutualTLS }

// withSubject returns r carrying the verified subject of its client
// certificate, if any.
func withSubject(r *http.Request, subject string) *http.Request {
	if subject == "" {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), subjectKey{}, subject))
}

// whoOf is who made r, as the history records it.
func whoOf(r *http.Request) string {
	if g := guestOf(r); g != nil {
		return g.ID
	}
	s, _ := r.Context().Value(subjectKey{}).(string)
	return s
}
