package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rexec/rexec/store"
)

func keyHash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

func TestGuests(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, t.TempDir(), store.Options{})

	expires := time.Unix(1_900_000_000, 5)
	admin := store.Guest{Name: "backup", Run: true, Status: true, Expires: expires, KeyHash: keyHash("admin's"), WithToken: true,
		Perms: []string{"example.hello/hello", "run.start[backup]"}}
	if err := s.CreateGuest(ctx, &admin); err != nil {
		t.Fatal(err)
	}
	if admin.ID == "" || admin.Created.IsZero() {
		t.Fatalf("after CreateGuest: %+v", admin)
	}
	// A key made without the admin token, as an older rexec allowed.
	open := store.Guest{Monitor: true, KeyHash: keyHash("anyone's")}
	if err := s.CreateGuest(ctx, &open); err != nil {
		t.Fatal(err)
	}

	g, err := s.GuestByKeyHash(ctx, keyHash("admin's"))
	if err != nil {
		t.Fatal(err)
	}
	if g.ID != admin.ID || g.Name != "backup" || !g.Run || g.Cancel || !g.Status || g.Monitor ||
		!g.Expires.Equal(expires) || !g.WithToken || !slices.Equal(g.Perms, admin.Perms) {
		t.Errorf("GuestByKeyHash = %+v", g)
	}
	for _, key := range []string{"anyone's", "nobody's"} {
		if _, err := s.GuestByKeyHash(ctx, keyHash(key)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GuestByKeyHash(%s): %v, want ErrNotFound", key, err)
		}
	}

	gs, err := s.ListGuests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 || gs[0].ID != admin.ID || !gs[0].WithToken || gs[1].ID != open.ID || gs[1].WithToken || !gs[1].Monitor ||
		len(gs[0].Perms) != 2 || gs[1].Perms != nil {
		t.Errorf("ListGuests = %+v", gs)
	}
	if n, err := s.CountGuestsWithoutToken(ctx); n != 1 || err != nil {
		t.Errorf("CountGuestsWithoutToken = %d, %v; want 1", n, err)
	}

	if err := s.DeleteGuest(ctx, open.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{open.ID, "nope", ""} {
		err := s.DeleteGuest(ctx, id)
		if !errors.Is(err, store.ErrNoSuchGuest) || errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteGuest(%q): %v, want ErrNoSuchGuest and not ErrNotFound", id, err)
		}
	}
	if n, err := s.CountGuestsWithoutToken(ctx); n != 0 || err != nil {
		t.Errorf("CountGuestsWithoutToken = %d, %v; want 0", n, err)
	}
	if gs, _ := s.ListGuests(ctx); len(gs) != 1 {
		t.Errorf("%d guests left, want 1", len(gs))
	}

	t.Run("expiry out of range", func(t *testing.T) {
		for _, exp := range []time.Time{maxTime.Add(time.Nanosecond), minTime.Add(-time.Nanosecond), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)} {
			g := store.Guest{KeyHash: keyHash(exp.String()), WithToken: true, Expires: exp}
			if err := s.CreateGuest(ctx, &g); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CreateGuest expiring %v: %v, want ErrInvalid", exp, err)
			}
			if g.ID != "" {
				t.Errorf("failed CreateGuest assigned ID %q", g.ID)
			}
		}
		if gs, _ := s.ListGuests(ctx); len(gs) != 1 {
			t.Errorf("%d guests, want 1", len(gs))
		}
		g := store.Guest{KeyHash: keyHash("last"), WithToken: true, Expires: maxTime}
		if err := s.CreateGuest(ctx, &g); err != nil {
			t.Fatalf("CreateGuest expiring at the latest storable time: %v", err)
		}
		if got, err := s.GuestByKeyHash(ctx, keyHash("last")); err != nil || !got.Expires.Equal(maxTime) {
			t.Errorf("expires %v, %v; want %v", got.Expires, err, maxTime)
		}
	})
}

// The first and last times the history can store: UNIX nanoseconds in an
// int64.
var (
	minTime = time.Date(1677, 9, 21, 0, 12, 43, 145224192, time.UTC)
	maxTime = time.Date(2262, 4, 11, 23, 47, 16, 854775807, time.UTC)
)

func TestStorableTime(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want bool
	}{
		{time.Time{}, true}, // none
		{time.Now(), true},
		{time.Unix(0, 0), true},
		{minTime, true},
		{minTime.Add(-time.Nanosecond), false},
		{maxTime, true},
		{maxTime.Add(time.Nanosecond), false},
		{maxTime.In(time.FixedZone("east", 14*3600)), true},
		{time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC), false},
		{time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), false},
		{time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), false},
	} {
		if got := store.StorableTime(tc.t); got != tc.want {
			t.Errorf("StorableTime(%v) = %v, want %v", tc.t, got, tc.want)
		}
	}
}

// TestTimeOverflow: times the history cannot store are refused with an
// error that says which times it can (storetest checks the kind).
func TestTimeOverflow(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, t.TempDir(), store.Options{})

	err := s.Create(ctx, &store.Run{Script: "x", StartAt: maxTime.Add(time.Nanosecond)})
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "is after 2262-04-11, the latest time the history can store") {
		t.Errorf("Create starting after 2262: %v, want ErrInvalid saying why", err)
	}
	err = s.Create(ctx, &store.Run{Script: "x", StartAt: minTime.Add(-time.Nanosecond)})
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "is before 1677-09-21, the earliest time the history can store") {
		t.Errorf("Create starting before 1677: %v, want ErrInvalid saying why", err)
	}
}

// TestGuestKeyTaken: a key whose hash a key has already is refused, and
// the first key stays as it was.
func TestGuestKeyTaken(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, t.TempDir(), store.Options{})
	first := store.Guest{Run: true, KeyHash: keyHash("same"), WithToken: true}
	if err := s.CreateGuest(ctx, &first); err != nil {
		t.Fatal(err)
	}
	second := store.Guest{Cancel: true, KeyHash: keyHash("same"), WithToken: true}
	if err := s.CreateGuest(ctx, &second); !errors.Is(err, store.ErrInvalid) || second.ID != "" {
		t.Errorf("CreateGuest of a taken key hash: %v, ID %q; want ErrInvalid and no ID", err, second.ID)
	}
	if g, err := s.GuestByKeyHash(ctx, keyHash("same")); err != nil || g.ID != first.ID || !g.Run || g.Cancel {
		t.Errorf("GuestByKeyHash = %+v, %v; want the first key", g, err)
	}
	if err := s.CreateGuest(ctx, &store.Guest{Run: true, WithToken: true}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("CreateGuest without a key hash: %v, want ErrInvalid", err)
	}
}
