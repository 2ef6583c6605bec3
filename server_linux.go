package main

// serverMissing is for builds without the server (serve_other.go): on
// Linux every command line that did not parse gets kong's own message.
func serverMissing(error) error { return nil }
