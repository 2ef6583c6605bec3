// Command hello is a rexec plugin command written in Go: a JSON-RPC 2.0
// server on its stdin and stdout, one message a line, built with
// github.com/creachadair/jrpc2. Build it into its plugin folder:
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
	}
	srv := jrpc2.NewServer(methods, nil)
	srv.Start(channel.Line(os.Stdin, os.Stdout))
	if err := srv.Wait(); err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err) // stderr goes to rexec's log
		os.Exit(1)
	}
}
