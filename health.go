package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// healthCmd is "rexec health": a probe for container health checks, in an
// image without curl. It exits 0 or 1 only: Docker reserves 2.
type healthCmd struct {
	serverFlags `embed:""`
	Insecure    bool          `short:"k" env:"-" help:"Do not verify the server's TLS certificate (a probe of 127.0.0.1 whose certificate names another host; GET /healthz carries no secret)."`
	Timeout     time.Duration `default:"5s" env:"-" help:"Give up after this long."`
}

func (c *healthCmd) Validate() error {
	if c.Timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	return nil
}

func (c *healthCmd) Run() error {
	cl, err := c.newClient("", c.Insecure)
	if err != nil {
		return &exitError{exitFailure, err}
	}
	defer cl.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	if err := cl.Health(ctx); err != nil {
		return &exitError{exitFailure, fmt.Errorf("unhealthy: %s: %w", c.URL, err)}
	}
	fmt.Println("ok")
	return nil
}
