package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Guest is a scoped key: the right to do some things to the runs of one
// script (or of every script), until it expires. The key itself is never
// stored, only its SHA-256 hash.
type Guest struct {
	ID      string // public id, shown in lists and recorded as who asked
	Name    string // the script it is limited to; "" for every script
	Run     bool   // may start runs
	Cancel  bool   // may cancel runs
	Status  bool   // may read status and output
	Monitor bool   // may watch events
	Expires time.Time
	Created time.Time
	KeyHash []byte // SHA-256 of the key
	// WithToken says that the key was made by an authenticated admin (the
	// admin token, or a client certificate under mutual TLS).
	// Only such keys work: GuestByKeyHash does not find the others, which
	// older versions of rexec let anyone make on a server without a token.
	// They are still listed, so that an admin can see and delete them.
	WithToken bool
	// Perms are the perms the key carries for plugin commands (package
	// plugin: Component.Allows); nil or empty for none.
	Perms []string
}

// Expired reports whether the key is past its expiry at now.
func (g Guest) Expired(now time.Time) bool {
	return !g.Expires.IsZero() && !now.Before(g.Expires)
}

const guestColumns = `id, name, run, cancel, status, monitor, expires, created, key_hash, with_token, perms`

func scanGuest(row interface{ Scan(...any) error }) (Guest, error) {
	var g Guest
	var run, cancel, status, monitor, withToken int
	var expires sql.NullInt64
	var created int64
	var perms string
	err := row.Scan(&g.ID, &g.Name, &run, &cancel, &status, &monitor, &expires, &created, &g.KeyHash, &withToken, &perms)
	if err != nil {
		return Guest{}, err
	}
	if err := json.Unmarshal([]byte(perms), &g.Perms); err != nil {
		return Guest{}, fmt.Errorf("guest %s: perms: %w", g.ID, err)
	}
	if len(g.Perms) == 0 {
		g.Perms = nil
	}
	g.Run, g.Cancel, g.Status, g.Monitor, g.WithToken = run == 1, cancel == 1, status == 1, monitor == 1, withToken == 1
	if expires.Valid {
		g.Expires = time.Unix(0, expires.Int64)
	}
	g.Created = time.Unix(0, created)
	return g, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// CheckNewGuest says whether g can be recorded as a new guest key
// (CreateGuest, Entry.CreateGuestAs): ErrInvalid when it has no key hash, or
// an Expires the history cannot store (see StorableTime). Its ID and
// Created are not looked at.
func CheckNewGuest(g *Guest) error {
	if len(g.KeyHash) == 0 {
		return fmt.Errorf("no key hash: %w", ErrInvalid)
	}
	return checkTime("expiry", g.Expires)
}

// CreateGuest records g, assigning its ID and creation time. g.WithToken is
// stored as given: set it when the request that makes the key carried the
// admin token. What CheckNewGuest refuses, and a key hash some key has
// already, are ErrInvalid.
func (s *Store) CreateGuest(ctx context.Context, g *Guest) (err error) {
	defer classifyTo(&err)
	if err := CheckNewGuest(g); err != nil {
		return fmt.Errorf("store: create guest: %w", err)
	}
	n := *g
	n.ID, n.Created = newID(), time.Now()
	if err := s.write(ctx, 0, func(tx *sql.Tx) error { return insertGuest(ctx, tx, &n) }); err != nil {
		return fmt.Errorf("store: create guest: %w", err)
	}
	g.ID, g.Created = n.ID, n.Created
	return nil
}

// insertGuest records g as it is, ID and Created included, unless a key
// has its ID or its key hash (ErrInvalid, before anything is written).
func insertGuest(ctx context.Context, tx *sql.Tx, g *Guest) error {
	var taken bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM guests WHERE id = ? OR key_hash = ?)`,
		g.ID, g.KeyHash).Scan(&taken); err != nil {
		return err
	}
	if taken {
		// Never the hash in an error: it names the key.
		return fmt.Errorf("a guest key with the id %q or the same key exists: %w", g.ID, ErrInvalid)
	}
	perms, err := json.Marshal(g.Perms)
	if err != nil || bytes.Equal(perms, []byte("null")) {
		perms = []byte("[]")
	}
	var expires any
	if !g.Expires.IsZero() {
		expires = g.Expires.UnixNano()
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO guests (`+guestColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		g.ID, g.Name, b2i(g.Run), b2i(g.Cancel), b2i(g.Status), b2i(g.Monitor), expires, g.Created.UnixNano(), g.KeyHash,
		b2i(g.WithToken), string(perms))
	return err
}

// ListGuests returns every guest key, oldest first, also those that no
// longer work because they were made without the admin token.
func (s *Store) ListGuests(ctx context.Context) (_ []Guest, err error) {
	defer classifyTo(&err)
	rows, err := s.db.QueryContext(ctx, `SELECT `+guestColumns+` FROM guests ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("store: list guests: %w", err)
	}
	defer rows.Close()
	var gs []Guest
	for rows.Next() {
		g, err := scanGuest(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list guests: %w", err)
		}
		gs = append(gs, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list guests: %w", err)
	}
	return gs, nil
}

// GuestByKeyHash finds the guest whose key hashes to hash. It is ErrNotFound
// when there is none, and when the key was made without the admin token
// (WithToken false): such keys no longer work.
func (s *Store) GuestByKeyHash(ctx context.Context, hash []byte) (_ Guest, err error) {
	defer classifyTo(&err)
	g, err := scanGuest(s.db.QueryRowContext(ctx, `SELECT `+guestColumns+` FROM guests WHERE key_hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return Guest{}, fmt.Errorf("store: guest key: %w", ErrNotFound)
	}
	if err != nil {
		return Guest{}, fmt.Errorf("store: guest key: %w", err)
	}
	if !g.WithToken {
		return Guest{}, fmt.Errorf("store: guest key %q was made without the admin token and no longer works: %w",
			g.ID, ErrNotFound)
	}
	return g, nil
}

// CountGuestsWithoutToken says how many guest keys were made without the
// admin token (by an older rexec): they no longer work, and an admin may
// want to delete them. For a warning at start-up.
func (s *Store) CountGuestsWithoutToken(ctx context.Context) (n int, err error) {
	defer classifyTo(&err)
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM guests WHERE with_token = 0`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count guests: %w", err)
	}
	return n, nil
}

// DeleteGuest removes a guest key. It is ErrNoSuchGuest, not ErrNotFound
// (which is about runs), when there is no key with that id.
func (s *Store) DeleteGuest(ctx context.Context, id string) (err error) {
	defer classifyTo(&err)
	return s.deleteGuest(ctx, 0, id)
}

// deleteGuest is DeleteGuest, the application of the log's entry seq when
// seq > 0 (see write).
func (s *Store) deleteGuest(ctx context.Context, seq uint64, id string) error {
	err := s.write(ctx, seq, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM guests WHERE id = ?`, id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 { // nothing deleted: a refusal that wrote nothing
			return ErrNoSuchGuest
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: delete guest %q: %w", id, err)
	}
	return nil
}
