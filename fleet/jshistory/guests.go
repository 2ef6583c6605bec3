package jshistory

import (
	"context"
	"fmt"
	"time"

	"github.com/rexec/rexec/store"
)

// The fleet's guest keys (webapi.Guests), replicated as the runs are: a key
// made or deleted on one host is an operation of the stream, which every
// host applies to its copy (store.Entry.CreateGuestAs, DeleteGuest); reads
// go to this host's copy. An operation carries the key's SHA-256 hash,
// never the key: the key is in the answer to the request that made it, and
// nowhere else.
//
// A key works on every host as soon as the request that made it has its
// answer: at once on the host that made it, and on the others by catching
// up when they find no key (GuestByKeyHash). A key deleted stops working on each host as it applies the
// deletion.

// CreateGuest records g in the fleet's keys, as store.Store.CreateGuest
// does on a single host: g.ID and g.Created are made here, and set once
// this host applied the key. It refuses what CreateGuest refuses
// (store.CheckNewGuest here; a key hash the fleet has already, when
// applied): store.ErrInvalid.
func (h *History) CreateGuest(ctx context.Context, g *store.Guest) error {
	if err := store.CheckNewGuest(g); err != nil {
		return fmt.Errorf("jshistory: create guest: %w", err)
	}
	n := *g
	// As the copies will read it back: nanoseconds, no monotonic clock.
	n.ID, n.Created = store.NewID(), time.Unix(0, time.Now().UnixNano())
	if err := h.write(ctx, &op{Kind: opGuestCreate, Guest: toGuest(&n)}); err != nil {
		return err
	}
	g.ID, g.Created = n.ID, n.Created
	return nil
}

// DeleteGuest removes a key from the fleet's keys. It is
// store.ErrNoSuchGuest when the fleet has no key with that id (when this
// host applies the deletion: the key may be gone by then, deleted by
// another host).
func (h *History) DeleteGuest(ctx context.Context, id string) error {
	// Every key of the fleet has an ID of this form (CreateGuest, and
	// store.Store.CreateGuest, make them so): no other is published.
	if !store.ValidID(id) {
		return fmt.Errorf("jshistory: delete guest %q: %w", id, store.ErrNoSuchGuest)
	}
	return h.write(ctx, &op{Kind: opGuestDelete, GuestID: id})
}

// ListGuests returns the fleet's guest keys as this host's copy holds them
// (store.Store.ListGuests).
func (h *History) ListGuests(ctx context.Context) ([]store.Guest, error) {
	return h.o.Local.ListGuests(ctx)
}

// GuestByKeyHash finds the key whose hash is hash in this host's copy
// (store.Store.GuestByKeyHash), caught up with the stream when it finds
// none (catchUp): a key made on another host works here as soon as it was
// given there.
func (h *History) GuestByKeyHash(ctx context.Context, hash []byte) (store.Guest, error) {
	return caughtUp(ctx, h, func() (store.Guest, error) { return h.o.Local.GuestByKeyHash(ctx, hash) })
}

// CountGuestsWithoutToken counts, in this host's copy, the keys made without
// the admin token (store.Store.CountGuestsWithoutToken).
func (h *History) CountGuestsWithoutToken(ctx context.Context) (int, error) {
	return h.o.Local.CountGuestsWithoutToken(ctx)
}
