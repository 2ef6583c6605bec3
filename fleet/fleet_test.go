package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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

// cluster starts a fleet of n embedded hosts, h0...h(n-1), routed to each
// other. Ports free a moment ago may be taken by another test process in
// between: that is tried again.
func cluster(t *testing.T, n int, tweak func(i int, c *Config)) []*Fleet {
	t.Helper()
	for try := 0; ; try++ {
		fs, err := tryCluster(t, n, tweak)
		if err == nil {
			return fs
		}
		if try == 2 || !strings.Contains(err.Error(), "listening on router port") {
			t.Fatal(err)
		}
	}
}

func tryCluster(t *testing.T, n int, tweak func(i int, c *Config)) ([]*Fleet, error) {
	t.Helper()
	ports := freePorts(t, n)
	cfgs := make([]Config, n)
	for i := range n {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		cfgs[i] = Config{
			Name: "test", Host: fmt.Sprintf("h%d", i), Address: fmt.Sprintf("http://h%d", i),
			Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes, StoreDir: t.TempDir(),
			JoinTimeout: 30 * time.Second, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		}
		if tweak != nil {
			tweak(i, &cfgs[i])
		}
	}
	fs := make([]*Fleet, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			fs[i], errs[i] = Open(context.Background(), cfgs[i], func() Status { return Status{Scripts: []string{"s" + cfgs[i].Host}} })
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

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestThreeHostsFormAFleet(t *testing.T) {
	fs := cluster(t, 3, nil)
	for _, f := range fs {
		waitFor(t, f.Host()+" sees 3 hosts up", 10*time.Second, func() bool {
			ms := f.Machines()
			up := 0
			for _, m := range ms {
				if m.Up {
					up++
				}
			}
			return len(ms) == 3 && up == 3
		})
		ms := f.Machines()
		for i, m := range ms {
			if m.Name != fmt.Sprintf("h%d", i) || m.Address != "http://h"+fmt.Sprint(i) || len(m.Scripts) != 1 || m.Scripts[0] != "sh"+fmt.Sprint(i) {
				t.Errorf("%s sees %+v", f.Host(), m)
			}
		}
	}
	// A stream with 3 replicas takes writes from any host.
	ctx := context.Background()
	s, err := fs[0].JS().CreateStream(ctx, jetstream.StreamConfig{Name: "X", Subjects: []string{"x"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if _, err := f.JS().Publish(ctx, "x", []byte(f.Host())); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 3 || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream %+v, %v", info, err)
	}
}

func TestDownWithinDownAfter(t *testing.T) {
	fs := cluster(t, 3, func(_ int, c *Config) { c.DownAfter = 500 * time.Millisecond })
	waitFor(t, "all up", 10*time.Second, func() bool { return fs[0].Up("h1") && fs[0].Up("h2") && fs[2].Up("h1") })
	down := make(chan string, 4)
	fs[0].OnDown(func(h string) { down <- h })
	fs[2].OnDown(func(h string) { down <- h })

	// A host that dies says nothing: its server stops without a word.
	killed := time.Now()
	fs[1].hosts.stopSilently()
	fs[1].nc.Close()
	fs[1].srv.Shutdown()
	for range 2 {
		select {
		case h := <-down:
			if h != "h1" {
				t.Fatalf("down: %s", h)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("h1 not found down")
		}
	}
	took := time.Since(killed)
	t.Logf("h1 found down by both after %s", took)
	if fs[0].Up("h1") || fs[2].Up("h1") {
		t.Error("h1 still up")
	}
	ms := fs[0].Machines()
	if len(ms) != 3 || ms[1].Name != "h1" || ms[1].Up {
		t.Errorf("machines: %+v", ms)
	}
}

// stopSilently stops the heartbeats without saying so: what a host that
// dies does.
func (h *hosts) stopSilently() {
	close(h.quit)
	h.done.Wait()
}
