// Command hello is a rexec plugin command written in Go: a JSON-RPC 2.0
// server on its stdin and stdout, one message a line, built with
// github.com/creachadair/jrpc2. Its method announce calls the server back:
// it emits a client event (event.emit, which its manifest's perms grant),
// which every subscriber of the event's name receives. Build it into its
// plugin folder:
//
//	go build -o examples/go-plugin/hello ./examples/go-plugin
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/creachadair/jrpc2"
	"github.com/creachadair/jrpc2/channel"
	"github.com/creachadair/jrpc2/handler"
)

type helloParams struct {
	Name string `json:"name"`
}

type addParams struct {
	A, B float64
}

type announceParams struct {
	Event string         `json:"event"`
	Data  map[string]any `json:"data"`
}

func main() {
	methods := handler.Map{
		"hello": handler.New(func(_ context.Context, p helloParams) string {
			if p.Name == "" {
				p.Name = "world"
			}
			return "hello, " + p.Name
		}),
		"add": handler.New(func(_ context.Context, p addParams) float64 { return p.A + p.B }),
		"pid": handler.New(func(context.Context) int { return os.Getpid() }),
		// announce emits a client event: a call of the plugin to the
		// server, on the same stdin and stdout.
		"announce": handler.New(func(ctx context.Context, p announceParams) (bool, error) {
			rsp, err := jrpc2.ServerFromContext(ctx).Callback(ctx, "event.emit", []any{p.Event, p.Data})
			if err != nil {
				return false, err
			}
			var ok bool
			return ok, rsp.UnmarshalResult(&ok)
		}),
	}
	// AllowPush: the server may call rexec back (Callback).
	srv := jrpc2.NewServer(methods, &jrpc2.ServerOptions{AllowPush: true})
	srv.Start(channel.Line(os.Stdin, os.Stdout))
	if err := srv.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err) // stderr goes to rexec's log
		os.Exit(1)
	}
}
