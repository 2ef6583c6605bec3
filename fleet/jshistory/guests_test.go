package jshistory_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/fleet/jshistory"
	"github.com/rexec/rexec/internal/testnats"
	"github.com/rexec/rexec/store"
	"github.com/rexec/rexec/webapi"
)

// A History is the fleet's guest keys for the web API, and answers the
// start-up count the node asks its store.
var (
	_ webapi.Guests = (*jshistory.History)(nil)
	_ interface {
		CountGuestsWithoutToken(context.Context) (int, error)
	} = (*jshistory.History)(nil)
)

// newKey makes a key as the web API does (32 random bytes in hex), and its
// hash.
func newKey() (key string, hash []byte) {
	raw := make([]byte, 32)
	rand.Read(raw)
	key = hex.EncodeToString(raw)
	h := sha256.Sum256([]byte(key))
	return key, h[:]
}

func listGuests(t *testing.T, h *jshistory.History) []store.Guest {
	t.Helper()
	gs, err := h.ListGuests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

// sameGuests fails the test unless every host lists the keys the first
// does, every field of every key, and returns them.
func sameGuests(t *testing.T, hosts ...*host) []store.Guest {
	t.Helper()
	want := listGuests(t, hosts[0].h)
	for _, h := range hosts[1:] {
		if got := listGuests(t, h.h); !reflect.DeepEqual(got, want) {
			t.Errorf("host %s lists other keys than host %s:\n got %+v\nwant %+v", h.name, hosts[0].name, got, want)
		}
	}
	return want
}

func countWithoutToken(t *testing.T, h *jshistory.History) int {
	t.Helper()
	n, err := h.CountGuestsWithoutToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGuestsReplicated: a key made on one host works on every host, is
// listed alike on each, and stops working everywhere once deleted on any;
// a host that joins late, or restarts on its old copy, has the keys.
func TestGuestsReplicated(t *testing.T) {
	srv := testnats.Start(t)
	names := newNames(t)
	ctx := context.Background()
	a := openHost(t, srv, names, "a", "", jshistory.Options{})
	b := openHost(t, srv, names, "b", "", jshistory.Options{})
	c := openHost(t, srv, names, "c", "", jshistory.Options{})

	key, hash := newKey()
	expires := time.Now().Add(time.Hour)
	g := store.Guest{Name: "backup", Run: true, Status: true, Expires: expires, KeyHash: hash, WithToken: true,
		Perms: []string{"example.hello/hello", "run.start[backup]"}}
	before := time.Now()
	if err := a.h.CreateGuest(ctx, &g); err != nil {
		t.Fatal(err)
	}
	if !store.ValidID(g.ID) || g.Created.Before(before.Add(-time.Millisecond)) || g.Created.After(time.Now()) {
		t.Fatalf("after CreateGuest: ID %q, Created %v", g.ID, g.Created)
	}
	// Found at once on the host that made it.
	if got, err := a.h.GuestByKeyHash(ctx, hash); err != nil || got.ID != g.ID {
		t.Fatalf("GuestByKeyHash on the writer: %+v, %v", got, err)
	}
	// A key made without the admin token (by an older rexec's rules) is
	// replicated too, listed and counted, and works nowhere.
	_, openHash := newKey()
	open := store.Guest{Monitor: true, KeyHash: openHash}
	if err := b.h.CreateGuest(ctx, &open); err != nil {
		t.Fatal(err)
	}
	settle(t, names, a, b, c)

	for _, h := range []*host{a, b, c} {
		got, err := h.h.GuestByKeyHash(ctx, hash)
		if err != nil {
			t.Fatalf("host %s: GuestByKeyHash: %v", h.name, err)
		}
		if got.ID != g.ID || got.Name != "backup" || !got.Run || got.Cancel || !got.Status || got.Monitor ||
			!got.Expires.Equal(expires) || !got.Created.Equal(g.Created) || !bytes.Equal(got.KeyHash, hash) ||
			!got.WithToken || !slices.Equal(got.Perms, g.Perms) {
			t.Errorf("host %s: GuestByKeyHash = %+v, want %+v", h.name, got, g)
		}
		if _, err := h.h.GuestByKeyHash(ctx, openHash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("host %s: the key without token: %v, want ErrNotFound", h.name, err)
		}
		if n := countWithoutToken(t, h.h); n != 1 {
			t.Errorf("host %s: CountGuestsWithoutToken = %d, want 1", h.name, n)
		}
	}
	if gs := sameGuests(t, a, b, c); len(gs) != 2 || gs[0].ID != g.ID || gs[1].ID != open.ID {
		t.Errorf("ListGuests = %+v, want %s then %s", gs, g.ID, open.ID)
	}

	// Deleted on c: gone everywhere.
	if err := c.h.DeleteGuest(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.h.GuestByKeyHash(ctx, hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("on the deleting host, right after: %v, want ErrNotFound", err)
	}
	settle(t, names, a, b, c)
	for _, h := range []*host{a, b, c} {
		if _, err := h.h.GuestByKeyHash(ctx, hash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("host %s: the deleted key: %v, want ErrNotFound", h.name, err)
		}
	}

	// Deletes of keys the fleet does not have, through the stream (a
	// key deleted, an ID never given) or not (no ID a key can have).
	lastBefore := lastSeq(t, a.js, names)
	for _, id := range []string{g.ID, store.NewID(), "nope", ""} {
		err := a.h.DeleteGuest(ctx, id)
		if !errors.Is(err, store.ErrNoSuchGuest) || errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteGuest(%q): %v, want ErrNoSuchGuest and not ErrNotFound", id, err)
		}
	}
	if n := lastSeq(t, a.js, names) - lastBefore; n != 2 {
		t.Errorf("%d deletes published, want 2 (the IDs of the form of a key's)", n)
	}
	// A key the store refuses is refused before it is published.
	if err := a.h.CreateGuest(ctx, &store.Guest{Run: true, WithToken: true}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("CreateGuest without a key hash: %v, want ErrInvalid", err)
	}
	if lastSeq(t, a.js, names) != lastBefore+2 {
		t.Error("a key without hash was published")
	}
	settle(t, names, a, b, c)
	if gs := sameGuests(t, a, b, c); len(gs) != 1 || gs[0].ID != open.ID {
		t.Errorf("after the deletes: %+v, want %s alone", gs, open.ID)
	}

	// b stops; a makes a key meanwhile. b restarted on its copy, and d,
	// new, have it once Open returns.
	if err := b.h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.h.CreateGuest(ctx, &store.Guest{Run: true, KeyHash: hash, WithToken: true}); !errors.Is(err, jshistory.ErrClosed) {
		t.Errorf("CreateGuest after Close: %v, want ErrClosed", err)
	}
	key2, hash2 := newKey()
	g2 := store.Guest{Cancel: true, KeyHash: hash2, WithToken: true}
	if err := a.h.CreateGuest(ctx, &g2); err != nil {
		t.Fatal(err)
	}
	b2 := &host{name: "b", dir: b.dir, js: b.js, local: b.local}
	b2.h = mustOpen(t, jshistory.Options{JS: b.js, Names: names, Host: "b", Local: b.local})
	d := openHost(t, srv, names, "d", "", jshistory.Options{})
	for _, h := range []*host{b2, d} {
		if got, err := h.h.GuestByKeyHash(ctx, hash2); err != nil || got.ID != g2.ID || !got.Cancel {
			t.Errorf("host %s, when Open returned: GuestByKeyHash = %+v, %v; want %s", h.name, got, err, g2.ID)
		}
		if _, err := h.h.GuestByKeyHash(ctx, hash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("host %s: the key deleted before it started: %v, want ErrNotFound", h.name, err)
		}
	}
	settle(t, names, a, b2, c, d)
	if gs := sameGuests(t, a, b2, c, d); len(gs) != 2 {
		t.Errorf("ListGuests = %+v, want 2 keys", gs)
	}

	// The stream never held a key: hashes only.
	streamHoldsNoKey(t, a.js, names, map[string][]byte{key: hash, key2: hash2})
}

// streamHoldsNoKey fails the test if a key of keys is in a message of the
// history stream (subject, headers or data), or a guest operation holds
// anything but the fields of a key as stored (its hash, never the key), or
// a key's hash is not in the stream.
func streamHoldsNoKey(t *testing.T, js jetstream.JetStream, names fleet.Names, keys map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, names.Stream("HISTORY"))
	if err != nil {
		t.Fatal(err)
	}
	state := s.CachedInfo().State
	opFields := map[string][]string{
		"guest-create": {"v", "id", "kind", "guest"},
		"guest-delete": {"v", "id", "kind", "guest_id"},
	}
	guestFields := []string{"id", "name", "run", "cancel", "status", "monitor", "expires", "created", "key_hash", "with_token", "perms"}
	hashes := map[string]bool{} // the hashes in the stream, in base64
	guestOps := 0
	for seq := state.FirstSeq; seq <= state.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("entry %d: %v", seq, err)
		}
		for key := range keys {
			hdr := fmt.Sprint(m.Header)
			if bytes.Contains(m.Data, []byte(key)) || strings.Contains(hdr, key) || strings.Contains(m.Subject, key) {
				t.Errorf("entry %d holds a key: %s %s", seq, m.Subject, m.Data)
			}
		}
		var o map[string]json.RawMessage
		if err := json.Unmarshal(m.Data, &o); err != nil {
			t.Fatalf("entry %d: %v", seq, err)
		}
		var kind string
		json.Unmarshal(o["kind"], &kind)
		want, ok := opFields[kind]
		if !ok {
			continue
		}
		guestOps++
		for f := range o {
			if !slices.Contains(want, f) {
				t.Errorf("entry %d (%s) has the field %q: %s", seq, kind, f, m.Data)
			}
		}
		if kind != "guest-create" {
			continue
		}
		var g map[string]json.RawMessage
		if err := json.Unmarshal(o["guest"], &g); err != nil {
			t.Fatalf("entry %d: guest: %v", seq, err)
		}
		for f := range g {
			if !slices.Contains(guestFields, f) {
				t.Errorf("entry %d (%s) has the guest field %q: %s", seq, kind, f, m.Data)
			}
		}
		var h []byte
		if err := json.Unmarshal(g["key_hash"], &h); err != nil || len(h) != sha256.Size {
			t.Errorf("entry %d: key_hash %s: %v, want a SHA-256 hash", seq, g["key_hash"], err)
		}
		hashes[base64.StdEncoding.EncodeToString(h)] = true
	}
	if guestOps == 0 {
		t.Error("no guest operation in the stream")
	}
	for key, hash := range keys {
		if !hashes[base64.StdEncoding.EncodeToString(hash)] {
			t.Errorf("the hash of key %.8s... is in no entry", key)
		}
	}
}

// TestGuestsConcurrent: hosts making and deleting keys at once end with the
// same keys; of one key made on every host at once, one is kept, the others
// refused alike everywhere; of one key deleted on two hosts at once, one
// delete is, the other is ErrNoSuchGuest.
func TestGuestsConcurrent(t *testing.T) {
	srv := testnats.Start(t)
	names := newNames(t)
	hosts := []*host{
		openHost(t, srv, names, "a", "", jshistory.Options{}),
		openHost(t, srv, names, "b", "", jshistory.Options{}),
		openHost(t, srv, names, "c", "", jshistory.Options{}),
	}
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i, h := range hosts {
		for w := range 2 {
			wg.Go(func() {
				for k := range 10 {
					_, hash := newKey()
					g := store.Guest{Name: fmt.Sprint("s", k%3), Run: k%2 == 0, Status: true, KeyHash: hash, WithToken: true,
						Perms: []string{fmt.Sprintf("p.%d/%d", i, w)}}
					if err := h.h.CreateGuest(ctx, &g); err != nil {
						errs <- fmt.Errorf("host %s writer %d: %w", h.name, w, err)
						return
					}
					if k%4 == 3 {
						if err := h.h.DeleteGuest(ctx, g.ID); err != nil {
							errs <- fmt.Errorf("host %s writer %d: %w", h.name, w, err)
							return
						}
					}
				}
			})
		}
	}
	// One key made on every host at once.
	_, same := newKey()
	results := make([]error, len(hosts))
	ids := make([]string, len(hosts))
	for i, h := range hosts {
		wg.Go(func() {
			g := store.Guest{Monitor: true, KeyHash: same, WithToken: true}
			results[i] = h.h.CreateGuest(ctx, &g)
			ids[i] = g.ID
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var kept string
	for i, err := range results {
		switch {
		case err == nil && kept == "":
			kept = ids[i]
		case err == nil:
			t.Errorf("the same key made twice: %s and %s", kept, ids[i])
		case !errors.Is(err, store.ErrInvalid):
			t.Errorf("host %s: %v, want ErrInvalid", hosts[i].name, err)
		case ids[i] != "":
			t.Errorf("host %s: refused, and ID %q given", hosts[i].name, ids[i])
		}
	}
	if kept == "" {
		t.Fatal("the key made on every host was kept on none")
	}
	// Deleted on two hosts at once.
	var dels [2]error
	for i := range dels {
		wg.Go(func() { dels[i] = hosts[i].h.DeleteGuest(ctx, kept) })
	}
	wg.Wait()
	if (dels[0] == nil) == (dels[1] == nil) || !errors.Is(errors.Join(dels[:]...), store.ErrNoSuchGuest) {
		t.Errorf("two deletes of a key: %v, %v; want one nil, one ErrNoSuchGuest", dels[0], dels[1])
	}
	last := settle(t, names, hosts...)
	gs := sameGuests(t, hosts...)
	t.Logf("%d entries, %d keys left, on 3 hosts in %v", last, len(gs), time.Since(start).Round(time.Millisecond))
	if len(gs) != 3*2*(10-2) {
		t.Errorf("%d keys, want %d", len(gs), 3*2*(10-2))
	}
	for _, h := range hosts {
		if _, err := h.h.GuestByKeyHash(ctx, same); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("host %s: the key deleted: %v, want ErrNotFound", h.name, err)
		}
	}
}

// TestGuestOpsSkipped: guest operations that cannot be applied are skipped,
// and those the store refuses applied as nothing, by every host alike.
func TestGuestOpsSkipped(t *testing.T) {
	srv := testnats.Start(t)
	names := newNames(t)
	ctx := context.Background()
	a := openHost(t, srv, names, "a", "", jshistory.Options{})
	_, hash := newKey()
	h := base64.StdEncoding.EncodeToString(hash)
	for _, bad := range []string{
		`{"v": 1, "id": "x", "kind": "guest-create"}`, // no guest
		`{"v": 1, "id": "x", "kind": "guest-create", "guest": {"id": "../x", "created": "2025-01-01T00:00:00Z", "key_hash": "` + h + `"}}`,
		`{"v": 1, "id": "x", "kind": "guest-create", "guest": {"id": "` + store.NewID() + `", "key_hash": "` + h + `"}}`, // no time
		`{"v": 1, "id": "x", "kind": "guest-create", "guest": {"id": "` + store.NewID() + `", "created": "2025-01-01T00:00:00Z"}}`,
		`{"v": 1, "id": "x", "kind": "guest-delete", "guest_id": "` + store.NewID() + `"}`,
		`{"v": 1, "id": "x", "kind": "guest-delete"}`,
		`{"v": 2, "id": "x", "kind": "guest-create", "guest": {"id": "` + store.NewID() + `", "created": "2025-01-01T00:00:00Z", "key_hash": "` + h + `"}}`,
	} {
		if _, err := a.js.Publish(ctx, names.Subject("history"), []byte(bad)); err != nil {
			t.Fatal(err)
		}
	}
	g := store.Guest{Run: true, KeyHash: hash, WithToken: true}
	if err := a.h.CreateGuest(ctx, &g); err != nil {
		t.Fatalf("a key after the bad entries: %v", err)
	}
	b := openHost(t, srv, names, "b", "", jshistory.Options{})
	if last := settle(t, names, a, b); last != 8 {
		t.Errorf("stream ends at %d, want 8", last)
	}
	if gs := sameGuests(t, a, b); len(gs) != 1 || gs[0].ID != g.ID {
		t.Errorf("keys %+v, want %s alone", gs, g.ID)
	}
}
