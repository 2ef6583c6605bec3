package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rexec/rexec/store"
	_ "modernc.org/sqlite" // the driver the store uses, to fill its database in bulk
)

// history measures GET /scripts/v1/runs, the run history, on histories of
// each size in -history (10^4, 10^5 and 10^6 runs; 10^4 with -quick): for
// each, a rexec server started on a data directory filled beforehand, and
// the latency of the first page and of a page deep in the cursor (half way
// through what the filter selects), with and without filters, over a
// keep-alive connection. There is no ceiling: what the figures show is
// whether a page costs the same at any size and depth.
func (b *bench) history(ctx context.Context) error {
	for _, n := range b.cfg.historySizes {
		if err := b.historyOf(ctx, n); err != nil {
			return fmt.Errorf("%d runs: %w", n, err)
		}
	}
	b.rep.note("history: pages of 100 runs (the default), p50 (p99) of %d requests each, one after the other; "+
		"a deep page is half way through what its filter selects, reached by paging 1000 at a time", b.historyReps())
	return nil
}

func (b *bench) historyReps() int {
	if b.cfg.quick {
		return 30
	}
	return 100
}

// historyScripts is how many scripts the runs of a filled history spread
// over; historyQueued how many of its runs are queued (of a script the
// exectab no longer has, so that they stay queued), spread over its time.
const (
	historyScripts = 10
	historyQueued  = 100
	historySpan    = 10 * 24 * time.Hour // the runs' queue times: the last ten days
)

// historyFilter is one query the history is measured with.
type historyFilter struct {
	name string
	q    url.Values
}

func (b *bench) historyOf(ctx context.Context, n int) error {
	dir := filepath.Join(b.tmp, fmt.Sprintf("history-%d", n))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	progress("history: filling %d runs", n)
	start := time.Now()
	now, err := fillHistory(ctx, dir, n)
	if err != nil {
		return fmt.Errorf("filling the history: %w", err)
	}
	filled := time.Since(start)
	var dbSize int64
	for _, f := range []string{"rexec.db", "rexec.db-wal"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err == nil {
			dbSize += fi.Size()
		}
	}

	exectab := filepath.Join(dir, "exectab")
	var lines []string
	for i := range historyScripts {
		lines = append(lines, fmt.Sprintf("-n s%d", i))
	}
	if err := os.WriteFile(exectab, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	start = time.Now()
	srv, err := startServer(ctx, b.bins.rexec, dir, "--scripts", exectab, "--data-dir", dir)
	if err != nil {
		return err
	}
	up := time.Since(start)
	defer func() {
		srv.stop(b.rep)
		srv.logSummary(b.rep)
	}()
	b.rep.note("history %s: filled in %s (%s of database), the server listening %s after its start",
		powerOf10(n), filled.Round(100*time.Millisecond), mib(dbSize), up.Round(time.Millisecond))

	c := newClient(srv.url, 1)
	defer c.close()
	mid := now.Add(-historySpan / 2)
	for _, f := range []historyFilter{
		{"no filter", url.Values{}},
		{"name", url.Values{"name": {"s3"}}},
		{"state=queued", url.Values{"state": {"queued"}}},
		{"name+state+since+until", url.Values{"name": {"s3"}, "state": {"done"},
			"since": {strconv.FormatInt(mid.Add(-24*time.Hour).Unix(), 10)}, "until": {strconv.FormatInt(mid.Unix(), 10)}}},
	} {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		first, err := b.pageLatency(ctx, c, f.q)
		if err != nil {
			return fmt.Errorf("%s, first page: %w", f.name, err)
		}
		deep, depth, walk, err := deepCursor(ctx, c, f.q)
		if err != nil {
			return fmt.Errorf("%s, paging: %w", f.name, err)
		}
		q := cloneValues(f.q)
		q.Set("cursor", deep)
		deepLat, err := b.pageLatency(ctx, c, q)
		if err != nil {
			return fmt.Errorf("%s, deep page: %w", f.name, err)
		}
		b.rep.single(fmt.Sprintf("history %s, %s: first / deep page p50 (p99) ms", powerOf10(n), f.name),
			fmt.Sprintf("%.2f (%.2f) / %.2f (%.2f) @%d", ms(percentile(first, 50)), ms(percentile(first, 99)),
				ms(percentile(deepLat, 50)), ms(percentile(deepLat, 99)), depth))
		if f.name == "no filter" {
			b.rep.single(fmt.Sprintf("history %s, paging 1000 a page (runs/s)", powerOf10(n)), fmt.Sprintf("%.0f", walk))
		}
	}
	return nil
}

// pageLatency times historyReps requests of the page q selects, after a
// few to warm up, and returns their latencies sorted.
func (b *bench) pageLatency(ctx context.Context, c *client, q url.Values) ([]time.Duration, error) {
	for range 3 {
		if _, err := historyPage(ctx, c, q); err != nil {
			return nil, err
		}
	}
	lat := make([]time.Duration, 0, b.historyReps())
	for range b.historyReps() {
		start := time.Now()
		if _, err := historyPage(ctx, c, q); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	return lat, nil
}

// page is the part of an answer of GET /scripts/v1/runs the bench reads.
type page struct {
	Success    bool              `json:"success"`
	Runs       []json.RawMessage `json:"runs"`
	NextCursor string            `json:"next_cursor"`
}

// historyPage gets and decodes one page.
func historyPage(ctx context.Context, c *client, q url.Values) (page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/scripts/v1/runs?"+q.Encode(), nil)
	if err != nil {
		return page{}, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return page{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return page{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return page{}, &statusError{code: resp.StatusCode, body: string(body)}
	}
	var p page
	if err := json.Unmarshal(body, &p); err != nil || !p.Success {
		return page{}, fmt.Errorf("answer %.200q: %v", body, err)
	}
	return p, nil
}

// deepCursor pages through what q selects, 1000 runs a page, to half way,
// and returns the cursor there, how many runs come before it, and the runs
// per second of the paging.
func deepCursor(ctx context.Context, c *client, q url.Values) (cursor string, depth int, perSec float64, err error) {
	q = cloneValues(q)
	q.Set("limit", "1000")
	// First, how many there are: page to the end.
	var cursors []string
	total := 0
	start := time.Now()
	for {
		p, err := historyPage(ctx, c, q)
		if err != nil {
			return "", 0, 0, err
		}
		total += len(p.Runs)
		if p.NextCursor == "" {
			break
		}
		cursors = append(cursors, p.NextCursor)
		q.Set("cursor", p.NextCursor)
	}
	perSec = float64(total) / time.Since(start).Seconds()
	if len(cursors) == 0 {
		// Fewer than a page of 1000: half way in pages of 100 is
		// the cursor after the first page of 1, repeated. Page by
		// the default instead.
		return halfWayBySmallPages(ctx, c, q, total, perSec)
	}
	i := (len(cursors) - 1) / 2 // cursors[i] comes after (i+1)*1000 runs
	return cursors[i], (i + 1) * 1000, perSec, nil
}

// halfWayBySmallPages is deepCursor for fewer than 1000 runs: the cursor
// after about half of them, in pages of 10.
func halfWayBySmallPages(ctx context.Context, c *client, q url.Values, total int, perSec float64) (string, int, float64, error) {
	q = cloneValues(q)
	q.Del("cursor")
	q.Set("limit", "10")
	depth := 0
	for {
		p, err := historyPage(ctx, c, q)
		if err != nil {
			return "", 0, 0, err
		}
		depth += len(p.Runs)
		if p.NextCursor == "" {
			return "", 0, 0, errors.New("fewer than 20 runs selected: no page is deep")
		}
		if depth >= total/2 {
			return p.NextCursor, depth, perSec, nil
		}
		q.Set("cursor", p.NextCursor)
	}
}

func cloneValues(v url.Values) url.Values {
	c := url.Values{}
	for k, vs := range v {
		c[k] = slices.Clone(vs)
	}
	return c
}

func powerOf10(n int) string {
	e := 0
	for m := n; m >= 10 && m%10 == 0; m /= 10 {
		e++
	}
	if n == pow10(e) {
		return fmt.Sprintf("10^%d", e)
	}
	return strconv.Itoa(n)
}

func pow10(e int) int {
	n := 1
	for range e {
		n *= 10
	}
	return n
}

// idEncoding makes run IDs of the store's form (lowercase base32 of 16
// random bytes), which its API checks.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// fillHistory makes the store in dir (its schema, through store.Open) and
// fills it with n runs in bulk, straight into SQLite, a transaction per
// 50,000 runs: done runs of s0..s9, queued at even intervals over the last
// ten days, and historyQueued queued runs of a script the exectab does not
// have, spread among them. It writes the columns of the schema's runs
// table, so a change of the schema shows here as a failed insert. It
// returns the time the last run was queued at.
func fillHistory(ctx context.Context, dir string, n int) (time.Time, error) {
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		return time.Time{}, err
	}
	if err := st.Close(); err != nil {
		return time.Time{}, err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "rexec.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		return time.Time{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	now := time.Now().Add(-time.Minute)
	first := now.Add(-historySpan)
	step := historySpan / time.Duration(n)
	queuedEvery := max(1, n/historyQueued)
	const batch = 50_000
	var raw [16]byte
	for lo := 0; lo < n; lo += batch {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return time.Time{}, err
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO runs (id, script, args, who, state, queued_at, started_at, ended_at,
			exit_code, ended, output_size, result) VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			tx.Rollback()
			return time.Time{}, err
		}
		for i := lo; i < min(n, lo+batch); i++ {
			rand.Read(raw[:])
			queued := first.Add(time.Duration(i) * step)
			args := fmt.Sprintf(`["run-%d"]`, i)
			var err error
			if i%queuedEvery == queuedEvery/2 {
				_, err = ins.ExecContext(ctx, idEncoding.EncodeToString(raw[:]), "retired", args, "queued",
					queued.UnixNano(), nil, nil, nil, "", 0, nil)
			} else {
				var result any
				if i%10 == 0 {
					result = fmt.Sprintf(`{"files":%d}`, i)
				}
				_, err = ins.ExecContext(ctx, idEncoding.EncodeToString(raw[:]), fmt.Sprintf("s%d", i%historyScripts), args,
					"done", queued.UnixNano(), queued.Add(time.Second).UnixNano(), queued.Add(2*time.Second).UnixNano(),
					i%7/6, "exit", 1000+i%5000, result)
			}
			if err != nil {
				tx.Rollback()
				return time.Time{}, fmt.Errorf("run %d: %w", i, err)
			}
		}
		if err := tx.Commit(); err != nil {
			return time.Time{}, err
		}
	}
	if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return time.Time{}, err
	}
	return first.Add(time.Duration(n-1) * step), nil
}
