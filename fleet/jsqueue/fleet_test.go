package jsqueue_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/rexec/rexec/detached"
	"github.com/rexec/rexec/fleet"
	"github.com/rexec/rexec/fleet/jsqueue"
	"github.com/rexec/rexec/internal/testnats"
)

// host is one host of a test's fleet: its queue and its connection.
type host struct {
	name string
	q    *jsqueue.Queue
	nc   *nats.Conn
}

// openHosts opens a queue of one fleet for each name, each on a connection
// of its own to srv (a new server if nil). A name may carry labels after a
// colon: "g:gpu,ssd".
func openHosts(t *testing.T, srv *server.Server, o jsqueue.Options, names ...string) []host {
	t.Helper()
	if srv == nil {
		srv = testnats.Start(t)
	}
	if o.Names.Fleet() == "" {
		o.Names = newNames(t)
	}
	var hs []host
	for _, n := range names {
		nc, js := testnats.Connect(t, srv)
		o := o
		o.JS, o.Logger = js, logger(t)
		name, labels, ok := strings.Cut(n, ":")
		o.Host = name
		if ok {
			o.Labels = strings.Split(labels, ",")
		}
		hs = append(hs, host{name: name, q: mustOpen(t, o), nc: nc})
	}
	return hs
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// cluster starts a fleet of n hosts, h0...h(n-1), each with its embedded
// NATS server routed to the others', as package fleet's tests do. Ports
// free a moment ago may be taken by another process in between, and on a
// loaded machine the cluster was seen once not to elect its JetStream
// leader within 30s: either is tried again, on new ports.
func cluster(t *testing.T, n int) []*fleet.Fleet {
	t.Helper()
	for try := 0; ; try++ {
		fs, err := tryCluster(t, n)
		if err == nil {
			return fs
		}
		if try == 2 {
			t.Fatal(err)
		}
		t.Logf("the cluster did not form, trying again: %v", err)
	}
}

func tryCluster(t *testing.T, n int) ([]*fleet.Fleet, error) {
	t.Helper()
	ports := freePorts(t, n)
	fs := make([]*fleet.Fleet, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		cfg := fleet.Config{
			Name: "test", Host: fmt.Sprintf("h%d", i), Address: fmt.Sprintf("http://h%d", i),
			Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes, StoreDir: t.TempDir(),
			JoinTimeout: 30 * time.Second, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		}
		wg.Go(func() {
			fs[i], errs[i] = fleet.Open(context.Background(), cfg, func() fleet.Status { return fleet.Status{} })
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, f := range fs {
			if f != nil {
				f.Close()
			}
		}
		return nil, err
	}
	t.Cleanup(func() {
		for _, f := range fs {
			f.Close()
		}
	})
	return fs, nil
}

// TestThreeHosts: three hosts add 200 runs and take them at once.
func TestThreeHosts(t *testing.T) {
	hs := openHosts(t, nil, jsqueue.Options{}, "a", "b", "c")
	takeEverything(t, hs)
}

// TestThreeHostsCluster is TestThreeHosts on a real cluster of three
// embedded servers, the streams with three replicas.
func TestThreeHostsCluster(t *testing.T) {
	takeEverything(t, clusterHosts(t, cluster(t, 3), jsqueue.Options{}))
}

// clusterHosts opens a queue on each host of fs, at once, with three
// replicas.
func clusterHosts(t *testing.T, fs []*fleet.Fleet, o jsqueue.Options) []host {
	t.Helper()
	hs := make([]host, len(fs))
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			o := o
			o.JS, o.Names, o.Replicas, o.Host, o.Logger = f.JS(), f.Names(), 3, f.Host(), logger(t)
			q, err := jsqueue.Open(ctx, o)
			if err != nil {
				t.Error(err)
				return
			}
			hs[i] = host{name: f.Host(), q: q, nc: f.Conn()}
		})
	}
	wg.Wait()
	for _, h := range hs {
		if h.q != nil {
			t.Cleanup(h.q.Close)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return hs
}

// runID is the ID of the run number j, added by host i: its script is
// s0 or s1.
func runID(i, j int) (script, id string) {
	return fmt.Sprintf("s%d", j%2), fmt.Sprintf("%d-%03d", i, j)
}

// takeEverything: each host adds a third of 200 runs, half of them
// before anybody takes, half while all three take; every run is taken
// once, each taker's runs of one adder and script in the order added (the
// log's order is FIFO, and each taker's takes are in the log's order),
// and the three hosts see the same queue once quiet.
func takeEverything(t *testing.T, hs []host) {
	t.Helper()
	const n = 200
	var ids []string
	for j := range n {
		_, id := runID(j%len(hs), j)
		ids = append(ids, id)
	}
	add := func(from, to int) {
		var wg sync.WaitGroup
		for i, h := range hs {
			wg.Go(func() {
				for j := from; j < to; j++ {
					if j%len(hs) == i {
						s, id := runID(i, j)
						h.q.Add(s, id, time.Time{})
					}
				}
			})
		}
		wg.Wait()
	}
	start := time.Now()
	add(0, n/2)
	t.Logf("%d runs added from %d hosts at once in %s", n/2, len(hs), time.Since(start))
	view := sameView(t, hs, ids)
	if !strings.Contains(view, fmt.Sprintf("len s0=%d s1=%d", n/4, n/4)) {
		t.Errorf("view after the first adds: %s", view)
	}

	var taken sync.Map // id → taker
	var count atomic.Int64
	var took [3][]string
	var lat [3]time.Duration
	start = time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { add(n/2, n) })
	for i, h := range hs {
		wg.Go(func() {
			deadline := time.Now().Add(60 * time.Second)
			for count.Load() < n && time.Now().Before(deadline) {
				got := false
				for _, s := range []string{"s0", "s1"} {
					t0 := time.Now()
					id, ok := h.q.Ready(s, time.Now())
					if !ok {
						continue
					}
					lat[i] += time.Since(t0)
					got = true
					if other, dup := taken.LoadOrStore(id, h.name); dup {
						t.Errorf("%s taken by %s and by %s", id, other, h.name)
					}
					took[i] = append(took[i], id)
					count.Add(1)
					h.q.Done(id)
				}
				if !got {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	total := 0
	var sum time.Duration
	for i := range hs {
		total += len(took[i])
		sum += lat[i]
		t.Logf("%s took %d runs", hs[i].name, len(took[i]))
	}
	t.Logf("%d runs taken by %d hosts at once (%d added meanwhile) in %s: a successful Ready takes %s on average",
		total, len(hs), n/2, d, sum/time.Duration(max(total, 1)))
	for _, id := range ids {
		if _, ok := taken.Load(id); !ok {
			t.Errorf("%s never taken", id)
		}
	}
	// Each taker's runs of one adder and script in the order added.
	for i := range hs {
		last := map[string]string{}
		for _, id := range took[i] {
			adder, j, _ := strings.Cut(id, "-")
			k, _ := strconv.Atoi(j)
			key := fmt.Sprintf("%s/s%d", adder, k%2)
			if prev, ok := last[key]; ok && prev > id {
				t.Errorf("%s took %s after %s", hs[i].name, id, prev)
			}
			last[key] = id
		}
	}
	if view := sameView(t, hs, ids); !strings.Contains(view, "len s0=0 s1=0") || strings.Contains(view, "@") {
		t.Errorf("view at the end: %s", view)
	}
}

// sameView waits until every host sees the same queue: the same scripts,
// lengths and places of ids. It returns that view.
func sameView(t *testing.T, hs []host, ids []string) string {
	t.Helper()
	view := func(q *jsqueue.Queue) string {
		var b strings.Builder
		fmt.Fprintf(&b, "scripts %v len s0=%d s1=%d", q.Scripts(), q.Len("s0"), q.Len("s1"))
		for _, id := range ids {
			if p := q.Position(id); p > 0 {
				fmt.Fprintf(&b, " %s@%d", id, p)
			}
		}
		return b.String()
	}
	var v string
	waitFor(t, "the hosts see the same queue", 10*time.Second, func() bool {
		v = view(hs[0].q)
		for _, h := range hs[1:] {
			if view(h.q) != v {
				return false
			}
		}
		return true
	})
	return v
}

// TestFleetWideLimit: a script's -s of 2 holds across three hosts that
// take its runs at once and run them a random while.
func TestFleetWideLimit(t *testing.T) {
	limit := func(s string) int {
		if s == "s" {
			return 2
		}
		return 0
	}
	hs := openHosts(t, nil, jsqueue.Options{Limit: limit, AckWait: time.Second}, "a", "b", "c")
	const n = 50
	for j := range n {
		hs[j%3].q.Add("s", fmt.Sprint(j), time.Time{})
	}
	var running, most, done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, h := range hs {
		wg.Go(func() {
			deadline := time.Now().Add(60 * time.Second)
			for done.Load() < n && time.Now().Before(deadline) {
				id, ok := h.q.Ready("s", time.Now())
				if !ok {
					select {
					case <-h.q.Changed():
					case <-time.After(20 * time.Millisecond):
					}
					continue
				}
				r := running.Add(1)
				for m := most.Load(); r > m && !most.CompareAndSwap(m, r); m = most.Load() {
				}
				time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
				running.Add(-1)
				h.q.Done(id)
				done.Add(1)
			}
		})
	}
	wg.Wait()
	t.Logf("%d runs done in %s, at most %d at once", done.Load(), time.Since(start), most.Load())
	if most.Load() > 2 {
		t.Errorf("%d ran at once with -s 2", most.Load())
	}
	if most.Load() < 2 {
		t.Errorf("never 2 at once: the limit is too strict (%d)", most.Load())
	}
	if done.Load() != n {
		t.Errorf("%d runs done, want %d", done.Load(), n)
	}
}

// TestHostDies: a host that dies holding the two slots of a script's -s
// (its connection ends, no Done, no Close) gives them back after AckWait;
// its runs, taken, are not run again, and the others take the rest.
func TestHostDies(t *testing.T) {
	const ackWait = time.Second
	hs := openHosts(t, nil, jsqueue.Options{Limit: func(string) int { return 2 }, AckWait: ackWait}, "a", "b", "c")
	a, b, c := hs[0], hs[1], hs[2]
	for j := range 10 {
		a.q.Add("s", fmt.Sprint(j), time.Time{})
	}
	var dead []string
	for range 2 {
		id, ok := a.q.Ready("s", time.Now())
		if !ok {
			t.Fatal("a got no run")
		}
		dead = append(dead, id)
	}
	if id, ok := b.q.Ready("s", time.Now()); ok {
		t.Fatalf("b took %s beyond the -s of 2", id)
	}
	// Longer than AckWait: a keeps its slots while it lives.
	time.Sleep(ackWait + ackWait/2)
	if id, ok := c.q.Ready("s", time.Now()); ok {
		t.Fatalf("c took %s while a holds both slots", id)
	}

	a.nc.Close()
	died := time.Now()
	var first time.Duration
	var taken []string
	for len(taken) < 8 && time.Since(died) < 20*time.Second {
		got := false
		for _, h := range []host{b, c} {
			if id, ok := h.q.Ready("s", time.Now()); ok {
				if first == 0 {
					first = time.Since(died)
				}
				taken = append(taken, id)
				h.q.Done(id)
				got = true
			}
		}
		if !got {
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("a died holding both slots: the first came back after %s (AckWait %s)", first, ackWait)
	if first == 0 || first > ackWait+time.Second {
		t.Errorf("the slots came back after %s, want within AckWait %s and a second", first, ackWait)
	}
	slices.Sort(taken)
	want := []string{"2", "3", "4", "5", "6", "7", "8", "9"}
	if !slices.Equal(dead, []string{"0", "1"}) || !slices.Equal(taken, want) {
		t.Errorf("a took %v, then b and c %v, want %v", dead, taken, want)
	}
}

// TestTargets: a run for host b is taken by b alone, one that needs the
// label gpu by a host with it alone; a run nobody may take keeps its
// place and holds back nobody, and so does a run waiting for its time.
func TestTargets(t *testing.T) {
	hs := openHosts(t, nil, jsqueue.Options{}, "a", "b", "g:gpu,ssd")
	a, b, g := hs[0].q, hs[1].q, hs[2].q
	a.AddFor("s", "nobody", time.Time{}, detached.Target{Host: "z"})
	a.Add("s", "later", time.Now().Add(time.Hour))
	a.AddFor("s", "forB", time.Time{}, detached.Target{Host: "b"})
	b.AddFor("s", "gpu", time.Time{}, detached.Target{Labels: []string{"gpu"}})
	a.AddFor("s", "gpuB", time.Time{}, detached.Target{Host: "b", Labels: []string{"gpu"}})
	g.Add("s", "any1", time.Time{})
	g.Add("s", "any2", time.Time{})
	ids := []string{"nobody", "later", "forB", "gpu", "gpuB", "any1", "any2"}
	places := func(q *jsqueue.Queue) string {
		var ps []string
		for _, id := range ids {
			ps = append(ps, fmt.Sprintf("%s@%d", id, q.Position(id)))
		}
		return strings.Join(ps, " ")
	}
	check := func(what, want string) {
		t.Helper()
		for _, q := range []*jsqueue.Queue{a, b, g} {
			waitFor(t, what, 5*time.Second, func() bool { return places(q) == want })
		}
	}
	check("all queued", "nobody@1 later@2 forB@3 gpu@4 gpuB@5 any1@6 any2@7")
	if id, ok := a.Ready("s", time.Now()); !ok || id != "any1" {
		t.Fatalf("a took %q, %v, want any1", id, ok)
	}
	check("after a took", "nobody@1 later@2 forB@3 gpu@4 gpuB@5 any1@0 any2@6")
	if id, ok := g.Ready("s", time.Now()); !ok || id != "gpu" {
		t.Fatalf("g took %q, %v, want gpu", id, ok)
	}
	if id, ok := b.Ready("s", time.Now()); !ok || id != "forB" {
		t.Fatalf("b took %q, %v, want forB", id, ok)
	}
	check("after g and b took", "nobody@1 later@2 forB@0 gpu@0 gpuB@3 any1@0 any2@4")
	if id, ok := b.Ready("s", time.Now()); !ok || id != "any2" {
		t.Errorf("b took %q, %v, want any2 (gpuB needs gpu, which b lacks)", id, ok)
	}
	for _, q := range []*jsqueue.Queue{a, b, g} {
		if id, ok := q.Ready("s", time.Now()); ok {
			t.Errorf("took %s: none may be taken", id)
		}
	}
	check("after the rest", "nobody@1 later@2 forB@0 gpu@0 gpuB@3 any1@0 any2@0")
	// The run waiting for its time, untargeted, comes before the ones for
	// nobody once due.
	if id, ok := g.Ready("s", time.Now().Add(2*time.Hour)); !ok || id != "later" {
		t.Errorf("g took %q, %v at its time, want later", id, ok)
	}
	// A run put back keeps its target.
	a.AddFor("s", "forA", time.Time{}, detached.Target{Host: "a"})
	id, ok := a.Ready("s", time.Now())
	if !ok || id != "forA" {
		t.Fatalf("a took %q, %v, want forA", id, ok)
	}
	a.AddFront("s", id, time.Time{})
	if id, ok := b.Ready("s", time.Now()); ok {
		t.Errorf("b took %s", id)
	}
	if id, ok := a.Ready("s", time.Now()); !ok || id != "forA" {
		t.Errorf("a took %q, %v after it put forA back", id, ok)
	}
}

// TestStartTimes: a run is not taken before its time, on the clock, and
// is taken after it on any host.
func TestStartTimes(t *testing.T) {
	hs := openHosts(t, nil, jsqueue.Options{}, "a", "b")
	a, b := hs[0].q, hs[1].q
	at := time.Now().Add(300 * time.Millisecond)
	a.Add("s", "x", at)
	waitFor(t, "b sees x", 5*time.Second, func() bool { return b.Position("x") == 1 })
	if got := b.Next(time.Now()); !got.Equal(at) {
		t.Errorf("Next on b = %v, want %v", got, at)
	}
	for time.Now().Before(at.Add(-20 * time.Millisecond)) {
		for _, q := range []*jsqueue.Queue{a, b} {
			if id, ok := q.Ready("s", time.Now()); ok {
				t.Fatalf("%s taken %s before its time", id, time.Until(at))
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Until(at))
	if id, ok := b.Ready("s", time.Now()); !ok || id != "x" {
		t.Errorf("at its time b took %q, %v", id, ok)
	}
}

// TestChanged: a host hears of a run another host queued for it, not of
// its own nor of one it may not take.
func TestChanged(t *testing.T) {
	hs := openHosts(t, nil, jsqueue.Options{}, "a", "b")
	a, b := hs[0].q, hs[1].q
	heard := func(q *jsqueue.Queue) bool {
		select {
		case <-q.Changed():
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	}
	a.AddFor("s", "forA", time.Time{}, detached.Target{Host: "a"})
	if heard(b) {
		t.Error("b heard of a run for a")
	}
	if heard(a) {
		t.Error("a heard of its own run")
	}
	a.Add("s", "any", time.Time{})
	if !heard(b) {
		t.Error("b did not hear of a run for any host")
	}
	b.AddFront("s", "front", time.Time{})
	if !heard(a) {
		t.Error("a did not hear of a run b put at the front")
	}
}

// TestChangedWhenSlotFrees: a host that found no free slot hears when to
// try again, and gets the slot another host freed.
func TestChangedWhenSlotFrees(t *testing.T) {
	hs := openHosts(t, nil, jsqueue.Options{Limit: func(string) int { return 1 }, AckWait: 500 * time.Millisecond}, "a", "b")
	a, b := hs[0].q, hs[1].q
	a.Add("s", "1", time.Time{})
	a.Add("s", "2", time.Time{})
	id, ok := a.Ready("s", time.Now())
	if !ok {
		t.Fatal("a took nothing")
	}
	if id, ok := b.Ready("s", time.Now()); ok {
		t.Fatalf("b took %s beyond -s 1", id)
	}
	a.Done(id)
	select {
	case <-b.Changed():
	case <-time.After(2 * time.Second):
		t.Fatal("b not told to try again")
	}
	if id, ok := b.Ready("s", time.Now()); !ok || id != "2" {
		t.Errorf("b took %q, %v", id, ok)
	}
}

// TestSlotsGivenBack: AddFront and Close give back the slots of a -s at
// once, not after AckWait; a script whose name is no subject token has its
// slots too.
func TestSlotsGivenBack(t *testing.T) {
	const script = "my script/v1.*"
	hs := openHosts(t, nil, jsqueue.Options{Limit: func(string) int { return 1 }, AckWait: 10 * time.Second}, "a", "b")
	a, b := hs[0].q, hs[1].q
	a.Add(script, "1", time.Time{})
	a.Add(script, "2", time.Time{})
	id, ok := a.Ready(script, time.Now())
	if !ok || id != "1" {
		t.Fatalf("a took %q, %v", id, ok)
	}
	if id, ok := b.Ready(script, time.Now()); ok {
		t.Fatalf("b took %s beyond -s 1", id)
	}
	a.AddFront(script, id, time.Time{})
	if id, ok := b.Ready(script, time.Now()); !ok || id != "1" {
		t.Fatalf("after a put it back, b took %q, %v", id, ok)
	}
	b.Close()
	if id, ok := a.Ready(script, time.Now()); !ok || id != "2" {
		t.Fatalf("after b closed, a took %q, %v", id, ok)
	}
	a.Done("2")
}

// BenchmarkTake measures Add and Ready on one server, three hosts, the
// queue holding b.N runs: a take is a look at the replica, a publish, and
// the wait for its apply.
func BenchmarkTake(b *testing.B) {
	for _, bc := range []struct {
		name    string
		limit   int
		waiting int // runs waiting for their time ahead of the others
	}{{"plain", 0, 0}, {"limit", 1000000, 0}, {"1000-waiting-ahead", 0, 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			srv := testnats.Start(b)
			names, _ := fleet.NewNames(fmt.Sprintf("b%d", fleets.Add(1)))
			var qs []*jsqueue.Queue
			for _, h := range []string{"a", "b", "c"} {
				_, js := testnats.Connect(b, srv)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				q, err := jsqueue.Open(ctx, jsqueue.Options{JS: js, Names: names, Host: h, Limit: func(string) int { return bc.limit }})
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(q.Close)
				qs = append(qs, q)
			}
			for i := range bc.waiting {
				qs[0].Add("s", fmt.Sprint("w", i), time.Now().Add(time.Hour))
			}
			start := time.Now()
			for i := range b.N {
				qs[i%3].Add("s", fmt.Sprint(i), time.Time{})
			}
			perAdd := float64(time.Since(start).Microseconds()) / float64(b.N)
			b.ResetTimer()
			for i := range b.N {
				id, ok := qs[i%3].Ready("s", time.Now())
				if !ok {
					b.Fatalf("take %d: none", i)
				}
				qs[i%3].Done(id)
			}
			b.ReportMetric(perAdd, "µs/add")
		})
	}
}

// TestHostDiesCluster: on a cluster of three, a host dies whole (its
// NATS server with it) holding both slots of a -s of 2: the other two get
// the slots back after AckWait, and a leader election when the dead
// host led the streams, and take the rest.
func TestHostDiesCluster(t *testing.T) {
	const ackWait = time.Second
	fs := cluster(t, 3)
	hs := clusterHosts(t, fs, jsqueue.Options{Limit: func(string) int { return 2 }, AckWait: ackWait})
	for j := range 10 {
		hs[j%3].q.Add("s", fmt.Sprint(j), time.Time{})
	}
	var dead []string
	waitFor(t, "h1 sees every run", 5*time.Second, func() bool { return hs[1].q.Len("s") == 10 })
	for range 2 {
		id, ok := hs[1].q.Ready("s", time.Now())
		if !ok {
			t.Fatal("h1 got no run")
		}
		dead = append(dead, id)
	}
	fs[1].Close()
	died := time.Now()
	var first time.Duration
	var taken []string
	for len(taken) < 8 && time.Since(died) < 30*time.Second {
		got := false
		for _, h := range []host{hs[0], hs[2]} {
			if id, ok := h.q.Ready("s", time.Now()); ok {
				if first == 0 {
					first = time.Since(died)
				}
				taken = append(taken, id)
				h.q.Done(id)
				got = true
			}
		}
		if !got {
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("h1 died holding both slots: the first came back to the others after %s (AckWait %s), all %d taken after %s",
		first, ackWait, len(taken), time.Since(died))
	if first == 0 || first > ackWait+4*time.Second {
		t.Errorf("the slots came back after %s", first)
	}
	all := append(slices.Clone(dead), taken...)
	slices.Sort(all)
	if len(all) != 10 || len(slices.Compact(all)) != 10 {
		t.Errorf("h1 took %v, then the others %v: want each of the 10 once", dead, taken)
	}
}
