// Package stream writes a started child's output as the response to the
// request that started it: text or NDJSON, heartbeats, the run's end in the
// trailers (Process-Exit-Code, Process-Signal) and in the one log line of
// the run, and the child's group killed when the client goes away.
//
// To make a held stream cheap it reads a text child's pipe itself, through
// the handle package child gives for it (raw.go), takes a quiet stream off
// net/http to serve it from one small goroutine that writes the HTTP/1.1
// chunks and trailers itself (park.go), and gives the connection back to
// the http.Server after the run. Its listener answers the connections the
// process has no descriptor for (shed.go). It works with sockets (hijacked,
// and watched for hangup through internal/fdwatch) so that webapi, which
// calls it, need not; the pipe's system calls are child's.
//
// It owns no routing, authentication, request decoding or error mapping
// (package webapi does), and it starts no process: webapi calls Serve once
// per request, with the child already started, and the broker owns the
// process table.
package stream
