package webapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/internal/xmlrpc"
)

// POST /api/xmlrpc: the callback of scripts written for the Symbolic runner,
// which call the server over XML-RPC with a user and a password:
//
//   - postInformation(user, password, id, information): the run id
//     ($REXEC_RUN_ID) posts information as its result, exactly as POST
//     /scripts/v1/result/{id} does (a struct is the result object; another
//     value becomes {"information": value}). Answers true.
//   - getAllMachines(user, password): the machines the server controls:
//     this host.
//
// The password is the run's token ($REXEC_RUN_TOKEN), valid for its run
// while it runs, as on the JSON callbacks; the user is not checked (Symbolic
// scripts send "externalscript"). The server's own credentials play no part:
// like the JSON callbacks, the endpoint is outside authentication but not
// outside the Host and Origin checks or the body limits. Errors of the call
// are XML-RPC faults in a 200 answer, as XML-RPC clients expect; errors of
// HTTP (method, size, time) are HTTP statuses.

const xmlrpcPath = "/api/xmlrpc"

// maxXMLRPCBody bounds a call: a 64 KiB result, with XML's overhead.
const maxXMLRPCBody = 256 << 10

// The application's fault codes, besides the protocol's (package xmlrpc).
const (
	faultNotAuthorized = 1 // the password is not the run's token, or the run is not running
	faultTooLarge      = 2 // the information is over 64 KiB as JSON
	faultNoScripts     = 3 // the server runs no scripts
)

func (s *Server) handleXMLRPC(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
		return
	}
	body, err := s.readBody(w, r, maxXMLRPCBody)
	if err != nil {
		fail(w, s.log, err)
		return
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	value, code, msg := s.xmlrpcCall(r, body)
	if code != 0 {
		xmlrpc.WriteFault(w, code, msg)
		return
	}
	xmlrpc.WriteResponse(w, value)
}

// xmlrpcCall runs the call in body: its answer, or a fault's code and
// message.
func (s *Server) xmlrpcCall(r *http.Request, body []byte) (any, int, string) {
	call, err := xmlrpc.ParseCall(bytes.NewReader(body))
	if err != nil {
		return nil, xmlrpc.FaultParse, err.Error()
	}
	if s.cfg.Runs == nil {
		return nil, faultNoScripts, "this server runs no scripts (start it with --scripts FILE)"
	}
	str := func(i int) (string, bool) {
		v, ok := call.Params[i].(string)
		return v, ok
	}
	switch call.Method {
	case "postInformation":
		if len(call.Params) != 4 {
			return nil, xmlrpc.FaultInvalidParams, "want postInformation(user, password, id, information)"
		}
		password, ok1 := str(1)
		id, ok2 := str(2)
		if n, ok := call.Params[2].(int64); ok {
			id, ok2 = strconv.FormatInt(n, 10), true
		}
		if !ok1 || !ok2 {
			return nil, xmlrpc.FaultInvalidParams, "password and id must be strings"
		}
		result, err := informationJSON(call.Params[3])
		if err != nil {
			return nil, xmlrpc.FaultInvalidParams, err.Error()
		}
		if len(result) > maxCallbackBody {
			return nil, faultTooLarge, "the information is over 64 KiB as JSON"
		}
		if err := s.cfg.Runs.PostResult(r.Context(), id, password, result); err != nil {
			code, msg := s.xmlrpcFault(err)
			return nil, code, msg
		}
		return true, 0, ""
	case "getAllMachines":
		if len(call.Params) != 2 {
			return nil, xmlrpc.FaultInvalidParams, "want getAllMachines(user, password)"
		}
		password, _ := str(1)
		if _, ok := s.cfg.Runs.RunOfToken(password); !ok {
			return nil, faultNotAuthorized, detached.ErrRunToken.Error()
		}
		var machines []any
		for _, m := range s.machines() {
			machines = append(machines, m)
		}
		return machines, 0, ""
	}
	return nil, xmlrpc.FaultNoMethod, "no method " + strconv.Quote(call.Method) + ": the methods are postInformation and getAllMachines"
}

// xmlrpcFault is the fault of an error of the run's callback.
func (s *Server) xmlrpcFault(err error) (int, string) {
	if errors.Is(err, detached.ErrRunToken) {
		return faultNotAuthorized, err.Error()
	}
	status, _, msg := kindOf(err)
	logRefusal(s.log, status, err)
	return xmlrpc.FaultApplication, msg
}

// informationJSON is what postInformation posts as the run's result: a
// struct as the object it is, another value as {"information": value}.
// Times are RFC 3339, bytes base64, as JSON has neither.
func informationJSON(v any) (json.RawMessage, error) {
	if _, ok := v.(map[string]any); !ok {
		v = map[string]any{"information": v}
	}
	b, err := json.Marshal(jsonValue(v))
	return json.RawMessage(b), err
}

func jsonValue(v any) any {
	switch v := v.(type) {
	case time.Time:
		return v.UTC().Format(time.RFC3339)
	case []any:
		out := make([]any, len(v))
		for i := range v {
			out[i] = jsonValue(v[i])
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = jsonValue(e)
		}
		return out
	}
	return v // []byte marshals as base64
}
