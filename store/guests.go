package store

import (
	"context"
	"database/sql"
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
}

// Expired reports whether the key is past its expiry at now.
func (g Guest) Expired(now time.Time) bool {
	return !g.Expires.IsZero() && !now.Before(g.Expires)
}

const guestColumns = `id, name, run, cancel, status, monitor, expires, created, key_hash`

func scanGuest(row interface{ Scan(...any) error }) (Guest, error) {
	var g Guest
	var run, cancel, status, monitor int
	var expires sql.NullInt64
	var created int64
	err := row.Scan(&g.ID, &g.Name, &run, &cancel, &status, &monitor, &expires, &created, &g.KeyHash)
	if err != nil {
		return Guest{}, err
	}
	g.Run, g.Cancel, g.Status, g.Monitor = run == 1, cancel == 1, status == 1, monitor == 1
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

// CreateGuest records g, assigning its ID and creation time.
func (s *Store) CreateGuest(ctx context.Context, g *Guest) error {
	if len(g.KeyHash) == 0 {
		return fmt.Errorf("store: create guest: %w: no key hash", ErrInvalid)
	}
	g.ID, g.Created = newID(), time.Now()
	var expires any
	if !g.Expires.IsZero() {
		expires = g.Expires.UnixNano()
	}
	tx, end, err := s.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("store: create guest: %w", err)
	}
	defer end()
	_, err = tx.ExecContext(ctx, `INSERT INTO guests (`+guestColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		g.ID, g.Name, b2i(g.Run), b2i(g.Cancel), b2i(g.Status), b2i(g.Monitor), expires, g.Created.UnixNano(), g.KeyHash)
	if err != nil {
		return fmt.Errorf("store: create guest: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: create guest: %w", err)
	}
	return nil
}

// ListGuests returns every guest key, oldest first.
func (s *Store) ListGuests(ctx context.Context) ([]Guest, error) {
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
	return gs, rows.Err()
}

// GuestByKeyHash finds the guest whose key hashes to hash; ErrNotFound if none.
func (s *Store) GuestByKeyHash(ctx context.Context, hash []byte) (Guest, error) {
	g, err := scanGuest(s.db.QueryRowContext(ctx, `SELECT `+guestColumns+` FROM guests WHERE key_hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return Guest{}, fmt.Errorf("store: guest key: %w", ErrNotFound)
	}
	if err != nil {
		return Guest{}, fmt.Errorf("store: guest key: %w", err)
	}
	return g, nil
}

// DeleteGuest removes a guest key; ErrNotFound if there is none with id.
func (s *Store) DeleteGuest(ctx context.Context, id string) error {
	tx, end, err := s.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("store: delete guest: %w", err)
	}
	defer end()
	res, err := tx.ExecContext(ctx, `DELETE FROM guests WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("store: delete guest: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: delete guest %q: %w", id, ErrNotFound)
	}
	return tx.Commit()
}
