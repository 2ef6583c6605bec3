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
const apiKeyHeader = "X-APIKey"

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
