package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestListRunsPlans: every combination of ListRuns' filters, with and
// without a cursor, reads one range of one index in the page's order: no
// scan of the table, no sort. The cursor (or Until, the lower of the two)
// bounds the range, so a page deep in a listing costs what the first does.
func TestListRunsPlans(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for mask := range 32 {
		var (
			q     RunQuery
			c     *cursor
			terms []string
			name  []string
		)
		index := "runs_by_time"
		if mask&1 != 0 {
			q.Script, index = "a", "runs_by_script"
			terms, name = append(terms, "script=?"), append(name, "script")
		}
		if mask&2 != 0 {
			q.State = StateDone
			if index == "runs_by_script" {
				index = "runs_by_script_state"
			} else {
				index = "runs_by_state"
			}
			terms, name = append(terms, "state=?"), append(name, "state")
		}
		if mask&4 != 0 {
			q.Since = time.Unix(100, 0)
			terms, name = append(terms, "queued_at>?"), append(name, "since")
		}
		if mask&8 != 0 {
			q.Until = time.Unix(200, 0)
			name = append(name, "until")
		}
		if mask&16 != 0 {
			c = &cursor{queuedAt: time.Unix(150, 0).UnixNano(), seq: 7}
			name = append(name, "cursor")
		}
		if mask&(8|16) != 0 {
			terms = append(terms, "queued_at<?")
		}
		want := "SCAN runs USING INDEX " + index
		if len(terms) > 0 {
			want = "SEARCH runs USING INDEX " + index + " (" + strings.Join(terms, " AND ") + ")"
		}
		if len(name) == 0 {
			name = []string{"all"}
		}
		t.Run(strings.Join(name, "+"), func(t *testing.T) {
			query, args := listQuery(q, c, 101)
			rows, err := s.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, notUsed int
				var detail string
				if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if len(plan) != 1 || plan[0] != want {
				t.Errorf("plan %q, want [%q]", plan, want)
			}
		})
	}
}

// TestListRunsBound: with Until and a cursor, only the lower one bounds the
// query, so the planner cannot seek to one and read down to the other.
func TestListRunsBound(t *testing.T) {
	until := time.Unix(200, 0)
	for _, tc := range []struct {
		name      string
		cursorAt  time.Time
		wantInSQL string
	}{
		{"cursor below until", time.Unix(150, 0), "(queued_at, seq) < (?, ?)"},
		{"cursor at until", until, "queued_at < ?"},
		{"cursor above until", time.Unix(250, 0), "queued_at < ?"},
	} {
		query, _ := listQuery(RunQuery{Until: until}, &cursor{queuedAt: tc.cursorAt.UnixNano(), seq: 3}, 10)
		if !strings.Contains(query, tc.wantInSQL) || strings.Count(query, "queued_at") != 3 { // the bound, ORDER BY, runColumns
			t.Errorf("%s: %s", tc.name, query)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []cursor{{0, 1}, {-5, 1}, {1 << 62, 1 << 62}, {time.Now().UnixNano(), 123456}} {
		got, err := parseCursor(c.String())
		if err != nil || got != c {
			t.Errorf("%+v: read back %+v, %v", c, got, err)
		}
	}
	good := cursor{1_796_197_481_000_000_000, 2}.String()
	for name, bad := range map[string]string{
		"seq 0":                    cursor{5, 0}.String(),
		"version 2":                withVersion(good, 2),
		"padded":                   good + "=",
		"short":                    good[:len(good)-1],
		"standard alphabet":        good[:8] + "+" + good[9:],
		"bits after the 17th byte": good[:len(good)-1] + "J",
		"empty":                    "",
	} {
		if c, err := parseCursor(bad); !errors.Is(err, ErrBadCursor) {
			t.Errorf("%s: %q read as %+v, %v", name, bad, c, err)
		}
	}
}

// withVersion is cursor c with another version byte.
func withVersion(c string, v byte) string {
	b, _ := cursorEncoding.DecodeString(c)
	b[0] = v
	return cursorEncoding.EncodeToString(b)
}

// FuzzParseCursor: a cursor that parses is the one that prints it, so two
// spellings never name the same place.
func FuzzParseCursor(f *testing.F) {
	f.Add(cursor{1_700_000_000_000_000_000, 42}.String())
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCursor(s)
		if err == nil && c.String() != s {
			t.Errorf("%q parsed as %+v, which prints as %q", s, c, c.String())
		}
	})
}
