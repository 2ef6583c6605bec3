package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// tlsSetup is one way of serving the streams the tls phase compares.
type tlsSetup struct {
	name    string   // its column
	dir     string   // its server's directory, under tmp/tls
	tls, h2 bool     // HTTPS; and HTTP/2 rather than HTTP/1.1
	args    []string // further flags of its server
	// connEach: each stream on a connection of its own (HTTP/1.1 always
	// does that). Only the held streams are measured: one stream's
	// throughput and latency are those of the set-up without it.
	connEach bool
}

// tlsSetups are measured in this order, each on a server of its own; the
// first is plain HTTP, which the TLS ones are divided by. Plain unparked
// is plain HTTP served the way a TLS stream is, by net/http alone to its
// end: between it and plain is what parking saves, between it and TLS h1
// what TLS itself costs. TLS h2 mux is many streams on a few connections,
// as one client that runs many commands at once has; TLS h2 solo one
// stream per connection, as clients in processes of their own have (curl
// and rexec run speak HTTP/2 over TLS when they can).
var tlsSetups = []tlsSetup{
	{name: "plain", dir: "plain"},
	{name: "plain unparked", dir: "unparked", args: []string{"--park-after=0"}},
	{name: "TLS h1", dir: "h1", tls: true},
	{name: "TLS h2 mux", dir: "h2", tls: true, h2: true},
	{name: "TLS h2 solo", dir: "h2solo", tls: true, h2: true, connEach: true},
}

// latencyKinds are the requests timed, each on connections of a kind (see
// latencyTimer); "resumed" over TLS only.
var latencyKinds = []struct{ req, conn string }{
	{"healthz", "kept"}, {"healthz", "new"}, {"healthz", "resumed"},
	{"true", "kept"}, {"true", "new"},
}

// tlsResult is what was measured of one set-up; what was not stays zero.
type tlsResult struct {
	srv   *server
	opts  clientOpts
	hold  holdCost
	mbps  float64
	state string // TLS version, cipher suite, key exchange, ALPN
	// Request latencies, sorted, by request and kind of connection
	// ("healthz kept", "true new", ...; see latencyKinds).
	lat       map[string][]time.Duration
	didResume map[string]int // of the "resumed" requests, how many resumed
}

// tlsPhase measures, in one run and against the same binary, what TLS
// changes: the server's RSS per held stream (over HTTP/1.1, a connection
// per stream; over HTTP/2, the streams multiplexed on a few connections,
// or each on its own), the throughput of one stream, and the latency of a
// request on a kept connection and on a new one (the handshake). Each set-up of tlsSetups
// has a server of its own, started fresh, so that none inherits another's
// heap: the held streams are measured on one server at a time, the
// others idle; throughput and latency then go round the servers in turn,
// so that the machine's moods fall on all alike. A CA and a server
// certificate are made for the phase, and the clients trust that CA alone.
func (b *bench) tlsPhase(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	dir := filepath.Join(b.tmp, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	p, err := makePKI(dir)
	if err != nil {
		return fmt.Errorf("making the certificates: %w", err)
	}
	res := make([]*tlsResult, len(tlsSetups))
	defer func() {
		for _, r := range res {
			if r != nil && r.srv != nil {
				r.srv.stop(b.rep)
				r.srv.logSummary(b.rep)
			}
		}
		b.rep.addTable(b.tlsTable(res))
	}()
	for i, s := range tlsSetups {
		res[i] = &tlsResult{opts: clientOpts{roots: p.roots, h2: s.h2, connEach: s.connEach}}
		if res[i].srv, err = startTLSSetup(ctx, b.bins.rexec, dir, s, p); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}

	var errs []error
	for i, s := range tlsSetups {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		progress("tls: held streams, %s", s.name)
		if err := b.tlsHold(ctx, s, res[i]); err != nil {
			errs = append(errs, fmt.Errorf("%s: held streams: %w", s.name, err))
		}
	}
	progress("tls: throughput")
	if err := b.tlsThroughput(ctx, res); err != nil {
		errs = append(errs, fmt.Errorf("throughput: %w", err))
	}
	progress("tls: latency")
	if err := b.tlsLatency(ctx, res); err != nil {
		errs = append(errs, fmt.Errorf("latency: %w", err))
	}
	return errors.Join(errs...)
}

// startTLSSetup starts the server of s, in a directory of its own under
// dir, and checks that it serves what s says.
func startTLSSetup(ctx context.Context, bin, dir string, s tlsSetup, p *pki) (*server, error) {
	dir = filepath.Join(dir, s.dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	args := slices.Clone(s.args)
	if s.tls {
		args = append(args, "--tls-cert", p.certFile, "--tls-key", p.keyFile)
	}
	srv, err := startServer(ctx, bin, dir, args...)
	if err != nil {
		return nil, err
	}
	srv.name = "tls phase, " + s.name
	scheme := map[bool]string{false: "http://", true: "https://"}[s.tls]
	if !strings.HasPrefix(srv.url, scheme) {
		err = fmt.Errorf("the server listens on %q, want %s", srv.url, scheme)
	}
	return srv, err
}

// tlsHold measures the cost of held streams to r's server, as the streams
// phase does.
func (b *bench) tlsHold(ctx context.Context, s tlsSetup, r *tlsResult) error {
	n, pid := b.cfg.streams, r.srv.pid
	c := newClientWith(r.srv.url, n, r.opts)
	defer c.close()
	hc, streams, err := b.holdStreams(ctx, "tls, "+s.name, pid, c, n, 0, b.cfg.marginal)
	closeStreams(streams)
	if took, left := waitNoChildren(pid, 15*time.Second); left > 0 {
		b.rep.problem("tls, %s: %d children still there %s after their clients closed", s.name, left, took.Round(time.Millisecond))
	}
	r.hold = hc
	if err != nil {
		return err
	}
	progress("tls: %s: %.1f KiB per held stream (%d streams on %d connections)", s.name, hc.perStream(), n, hc.dials)
	if hc.more > 0 {
		progress("tls: %s: %.1f KiB per further stream (%d more on %d connections)", s.name, hc.perFurther(), hc.more, hc.dialsMore)
	}
	return nil
}

// tlsThroughput streams the throughput phase's generator through each
// server in turn, reps times, and keeps each one's best.
func (b *bench) tlsThroughput(ctx context.Context, res []*tlsResult) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	n := int64(b.cfg.mb) * 1_000_000
	clients := make([]*client, len(res))
	for i, r := range res {
		if tlsSetups[i].connEach {
			continue
		}
		c := newClientWith(r.srv.url, 1, r.opts)
		c.onResp = func(resp *http.Response) error {
			if r.state == "" && resp.TLS != nil {
				r.state = fmt.Sprintf("%s, %s, %s, ALPN %q", tls.VersionName(resp.TLS.Version),
					tls.CipherSuiteName(resp.TLS.CipherSuite), resp.TLS.CurveID, resp.TLS.NegotiatedProtocol)
			}
			return nil
		}
		defer c.close()
		clients[i] = c
	}
	best := make([]time.Duration, len(res))
	for range b.cfg.reps {
		for i, c := range clients {
			if c == nil {
				continue
			}
			d, err := b.serverThroughput(ctx, c, n)
			if err != nil {
				return fmt.Errorf("%s: %w", tlsSetups[i].name, err)
			}
			if best[i] == 0 || d < best[i] {
				best[i] = d
			}
		}
	}
	for i, r := range res {
		if best[i] > 0 {
			r.mbps = float64(n) / 1e6 / best[i].Seconds()
			progress("tls: %s: %.0f MB/s", tlsSetups[i].name, r.mbps)
		}
	}
	return nil
}

// tlsLatency times requests of each of latencyKinds to each server, in
// tlsRuns rounds of one request of each kind of connection to each
// server, in a random order: GET /healthz first, then runs of `true`.
func (b *bench) tlsLatency(ctx context.Context, res []*tlsResult) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var timers []*latencyTimer
	for i, r := range res {
		r.lat, r.didResume = map[string][]time.Duration{}, map[string]int{}
		if tlsSetups[i].connEach {
			continue
		}
		for _, k := range latencyKinds {
			if k.conn == "resumed" && !tlsSetups[i].tls {
				continue
			}
			t := newLatencyTimer(r.srv.url, r.opts, k.req, k.conn)
			defer t.close()
			t.r, t.key = r, k.req+" "+k.conn
			timers = append(timers, t)
		}
	}
	for _, t := range timers { // each path once, untimed
		if err := t.do(ctx, t.kept); err != nil {
			return fmt.Errorf("%s, %s: %w", t.r.srv.name, t.key, err)
		}
	}
	for _, t := range timers {
		t.resumed = 0
	}
	// GET /healthz first, then runs of `true`, which leave work behind
	// them (the reap, the log line) that would weigh on a GET after them.
	// Each round in a new order, so that no server is always woken
	// after the same one.
	for _, req := range []string{"healthz", "true"} {
		for range b.cfg.tlsRuns {
			rand.Shuffle(len(timers), func(i, j int) { timers[i], timers[j] = timers[j], timers[i] })
			for _, t := range timers {
				if t.req != req {
					continue
				}
				if err := t.time(ctx); err != nil {
					return fmt.Errorf("%s, %s: %w", t.r.srv.name, t.key, err)
				}
			}
		}
	}
	for _, t := range timers {
		slices.Sort(t.d)
		t.r.lat[t.key], t.r.didResume[t.key] = t.d, t.resumed
	}
	for i, r := range res {
		if len(r.lat["healthz kept"]) == 0 {
			continue
		}
		progress("tls: %s: GET /healthz p50 %.3f ms on a kept connection, %.3f ms on a new one", tlsSetups[i].name,
			ms(percentile(r.lat["healthz kept"], 50)), ms(percentile(r.lat["healthz new"], 50)))
	}
	return nil
}

// latencyTimer times one kind of request on one kind of connection to one
// server: "kept", one keep-alive connection for all; "new", a new
// connection (and client) for each, over TLS with a full handshake;
// "resumed", a new connection for each that resumes the TLS session of
// the one before. The request is "healthz", GET /healthz, which spawns
// nothing, or "true", a run of `true` read to its end and checked.
type latencyTimer struct {
	r       *tlsResult
	key     string
	url     string
	opts    clientOpts
	req     string
	conn    string
	kept    *client // for "kept"; for the others, the untimed first request
	run     *aliasRunner
	d       []time.Duration
	resumed int // handshakes that resumed a session
}

func newLatencyTimer(url string, opts clientOpts, req, conn string) *latencyTimer {
	t := &latencyTimer{url: url, opts: opts, req: req, conn: conn, run: newAliasRunner("lat-"+req+"-"+conn, "true")}
	if conn == "resumed" {
		t.opts.sessions = tls.NewLRUClientSessionCache(4)
	}
	t.kept = t.newClient()
	return t
}

func (t *latencyTimer) newClient() *client {
	c := newClientWith(t.url, 1, t.opts)
	c.onResp = func(resp *http.Response) error {
		if resp.TLS != nil && resp.TLS.DidResume {
			t.resumed++
		}
		return nil
	}
	return c
}

// do makes one request on c.
func (t *latencyTimer) do(ctx context.Context, c *client) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if t.req == "healthz" {
		return c.get(ctx, "/healthz")
	}
	return t.run.run(ctx, c, nil)
}

// time makes one request, on a connection of its kind, and records how
// long it took.
func (t *latencyTimer) time(ctx context.Context) error {
	c := t.kept
	if t.conn != "kept" {
		c = t.newClient()
	}
	start := time.Now()
	err := t.do(ctx, c)
	took := time.Since(start)
	if c != t.kept {
		c.close()
	}
	t.d = append(t.d, took)
	return err
}

func (t *latencyTimer) close() { t.kept.close() }

// tlsTable puts the phase's figures side by side, with the ratios of TLS
// over HTTP/1.1 and over HTTP/2 to plain HTTP, and notes the details.
func (b *bench) tlsTable(res []*tlsResult) table {
	n := b.cfg.streams
	type rowDef struct {
		figure, format string
		ratio          bool // whether TLS / plain means something
		val            func(r *tlsResult) (float64, bool)
	}
	held := func(f func(h holdCost) float64) func(*tlsResult) (float64, bool) {
		return func(r *tlsResult) (float64, bool) { return f(r.hold), r.hold.held.rss != 0 }
	}
	defs := []rowDef{
		{fmt.Sprintf("RSS per held stream, %d streams (KiB)", n), "%.1f", true, held(holdCost.perStream)},
		{fmt.Sprintf("RSS per further held stream, %d -> %d (KiB)", n, 5*n), "%.1f", true,
			func(r *tlsResult) (float64, bool) { return r.hold.perFurther(), r.hold.more > 0 }},
		{fmt.Sprintf("connections for %d streams", n), "%.0f", false,
			held(func(h holdCost) float64 { return float64(h.dials) })},
		{fmt.Sprintf("connections for %d streams", 5*n), "%.0f", false,
			func(r *tlsResult) (float64, bool) { return float64(r.hold.dials + r.hold.dialsMore), r.hold.more > 0 }},
		{fmt.Sprintf("server fds per held stream, %d streams", n), "%.2f", false,
			held(func(h holdCost) float64 { return float64(h.held.fds-h.idle.fds) / float64(h.n) })},
		{fmt.Sprintf("server threads, %d streams held", n), "%.0f", false,
			held(func(h holdCost) float64 { return float64(h.held.threads) })},
		{fmt.Sprintf("throughput, one stream, %d MB of 100 B lines (MB/s)", b.cfg.mb), "%.0f", true,
			func(r *tlsResult) (float64, bool) { return r.mbps, r.mbps > 0 }},
	}
	for _, k := range latencyKinds {
		what := map[string]string{"healthz": "GET /healthz", "true": "run `true`"}[k.req]
		conn := map[string]string{"kept": "kept connection", "new": "new connection", "resumed": "new connection resuming"}[k.conn]
		key := k.req + " " + k.conn
		defs = append(defs, rowDef{fmt.Sprintf("%s, %s, p50 (ms)", what, conn), "%.3f", k.conn != "resumed",
			func(r *tlsResult) (float64, bool) { d := r.lat[key]; return ms(percentile(d, 50)), len(d) > 0 }})
	}

	header := []string{"figure"}
	for _, s := range tlsSetups {
		header = append(header, s.name)
	}
	var tlsCols []int // the columns divided by plain's
	for i, s := range tlsSetups {
		if s.tls {
			tlsCols = append(tlsCols, i)
			header = append(header, strings.TrimPrefix(s.name, "TLS ")+" / plain")
		}
	}
	t := table{title: "TLS (tls phase: each column a server of its own, the same binary)", header: header}
	for _, d := range defs {
		cells := []string{d.figure}
		vals := make([]float64, len(res))
		measured := false
		for i, r := range res {
			cell := "-"
			if r != nil {
				if v, ok := d.val(r); ok {
					vals[i], cell, measured = v, fmt.Sprintf(d.format, v), true
				}
			}
			cells = append(cells, cell)
		}
		if !measured { // not measured at all (-marginal=false, say)
			continue
		}
		for _, i := range tlsCols {
			cell := "-"
			if d.ratio && vals[i] != 0 && vals[0] != 0 {
				cell = fmt.Sprintf("%.2f", vals[i]/vals[0])
			}
			cells = append(cells, cell)
		}
		t.rows = append(t.rows, cells)
	}
	t.foot = []string{
		"h1, h2 mux, h2 solo / plain: the TLS figure over plain's (for MB/s, the fraction of it). plain unparked:",
		"--park-after=0, every stream left with net/http, as TLS streams always are. A connection per stream, but for",
		"h2 mux: one connection opened first, which the streams share (Go's client opens more once one carries the",
		"server's maximum). h2 solo: held streams only; one stream's throughput and latency are h2 mux's.",
		fmt.Sprintf("Latencies: %d requests per row, in rounds that go round the servers in a random order; a new TLS", b.cfg.tlsRuns),
		"connection is a full handshake (ECDSA P-256 certificate), resuming one resumes the session of the one before.",
	}

	for i, r := range res {
		if r == nil {
			continue
		}
		var parts []string
		if r.state != "" {
			parts = append(parts, r.state)
		}
		if h := r.hold; h.held.rss != 0 {
			parts = append(parts, fmt.Sprintf("%d streams opened in %s; idle %v; held %v",
				h.n, h.opened.Round(time.Millisecond), h.idle, h.held))
		}
		if h := r.hold; h.more > 0 {
			parts = append(parts, fmt.Sprintf("%d more on %d more connections: held %v", h.more, h.dialsMore, h.heldMore))
		}
		for _, k := range latencyKinds {
			key := k.req + " " + k.conn
			if d := r.lat[key]; len(d) > 0 {
				p := fmt.Sprintf("%s p90 %.3f ms", key, ms(percentile(d, 90)))
				if k.conn == "resumed" {
					p += fmt.Sprintf(" (%d of %d resumed)", r.didResume[key], len(d))
				}
				parts = append(parts, p)
			}
		}
		if len(parts) > 0 {
			b.rep.note("tls, %s: %s", tlsSetups[i].name, strings.Join(parts, "; "))
		}
	}
	return t
}
