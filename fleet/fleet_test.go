package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rexec/rexec/internal/testnats"
	"github.com/rexec/rexec/internal/testtls"
	"github.com/rexec/rexec/internal/tlsfiles"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testnats.LeakOptions()...) }

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
	down := make(chan string, 16)
	fs[0].OnDown(func(h string) { down <- h })
	fs[2].OnDown(func(h string) { down <- h })

	// A host that dies says nothing: its server stops without a word.
	killed := time.Now()
	fs[1].hosts.stopSilently()
	fs[1].nc.Close()
	fs[1].srv.Shutdown()
	// A live host may be found down too on a machine loaded enough to
	// delay its heartbeats past 500 ms (the whole suite under -race): that
	// is the setting doing its job, and comes back up; only h1 must be.
	for found := 0; found < 2; {
		select {
		case h := <-down:
			if h == "h1" {
				found++
			} else {
				t.Logf("%s found down for a while: a heartbeat late on a loaded machine", h)
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

func TestRoutesNeedTheToken(t *testing.T) {
	fs := cluster(t, 3, func(_ int, c *Config) { c.Token = "shared-secret" })
	waitFor(t, "all up", 10*time.Second, func() bool { return fs[0].Up("h1") && fs[0].Up("h2") })

	// A host with another token is refused by the others' routes: it never
	// meets a quorum.
	ports := freePorts(t, 1)
	var routes []string
	for _, f := range fs {
		routes = append(routes, "nats://"+f.srv.ClusterAddr().String())
	}
	_, err := Open(context.Background(), Config{
		Name: "test", Host: "intruder", Listen: fmt.Sprintf("127.0.0.1:%d", ports[0]), Routes: routes,
		StoreDir: t.TempDir(), Token: "guessed", JoinTimeout: 3 * time.Second,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel),
	}, nil)
	if err == nil {
		t.Fatal("a host with the wrong token joined the fleet")
	}
	for _, m := range fs[0].Machines() {
		if m.Name == "intruder" {
			t.Fatalf("the intruder is listed: %+v", m)
		}
	}
}

func TestRoutesOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testtls.NewCA(t, "fleet CA")
	caFile := ca.WriteCert(t, dir, "ca")
	fs := cluster(t, 3, func(i int, c *Config) {
		leaf := ca.Issue(t, dir, fmt.Sprintf("h%d", i), testtls.Leaf{CN: fmt.Sprintf("h%d", i), Peer: true})
		tc, err := tlsfiles.Mutual(tlsfiles.Files{Cert: leaf.CertFile, Key: leaf.KeyFile, ClientCA: caFile})
		if err != nil {
			t.Fatal(err)
		}
		c.TLS = tc
	})
	waitFor(t, "all up over TLS", 10*time.Second, func() bool { return fs[0].Up("h1") && fs[0].Up("h2") && fs[1].Up("h2") })

	// A host whose certificate another CA signed is refused.
	other := testtls.NewCA(t, "another CA")
	leaf := other.Issue(t, dir, "intruder", testtls.Leaf{CN: "intruder", Peer: true})
	tc, err := tlsfiles.Mutual(tlsfiles.Files{Cert: leaf.CertFile, Key: leaf.KeyFile, ClientCA: other.WriteCert(t, dir, "other")})
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 1)
	var routes []string
	for _, f := range fs {
		routes = append(routes, "nats://"+f.srv.ClusterAddr().String())
	}
	if _, err := Open(context.Background(), Config{
		Name: "test", Host: "intruder", Listen: fmt.Sprintf("127.0.0.1:%d", ports[0]), Routes: routes,
		StoreDir: t.TempDir(), TLS: tc, JoinTimeout: 3 * time.Second,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel),
	}, nil); err == nil {
		t.Fatal("a host with a certificate of another CA joined the fleet")
	}
}

// TestExternalNATS: hosts that connect to an existing NATS server (with a
// token) instead of embedding one.
func TestExternalNATS(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), Authorization: "nats-token", NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the NATS server did not start")
	}
	t.Cleanup(s.Shutdown)
	open := func(host, token string) (*Fleet, error) {
		return Open(context.Background(), Config{Name: "ext", Host: host, URL: s.ClientURL(), Token: token,
			JoinTimeout: 3 * time.Second, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)}, nil)
	}
	a, err := open("a", "nats-token")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := open("b", "nats-token")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.srv != nil || a.Replicas() != 1 {
		t.Errorf("embedded %v, replicas %d", a.srv != nil, a.Replicas())
	}
	waitFor(t, "a and b see each other", 5*time.Second, func() bool { return a.Up("b") && b.Up("a") })
	if _, err := open("c", "wrong"); err == nil {
		t.Error("a host with the wrong token connected")
	}
}

func TestConfigCheck(t *testing.T) {
	ok := Config{Name: "f", Host: "h"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"fleet name", func(c *Config) { c.Name = "a.b" }},
		{"host name", func(c *Config) { c.Host = "" }},
		{"url and routes", func(c *Config) { c.URL = "nats://x:4222"; c.Routes = []string{"nats://y:6222"} }},
		{"route scheme", func(c *Config) { c.Routes = []string{"http://y:6222"} }},
		{"route credentials", func(c *Config) { c.Routes = []string{"nats://u:p@y:6222"} }},
		{"listen", func(c *Config) { c.Listen = "nowhere" }},
		{"label", func(c *Config) { c.Labels = []string{"a b"} }},
		{"nkey without url", func(c *Config) { c.NKeySeedFile = "/x" }},
	} {
		c := ok
		tc.edit(&c)
		if err := c.Check(); err == nil {
			t.Errorf("%s: Check = nil", tc.name)
		}
	}
	if err := ok.Check(); err != nil {
		t.Errorf("Check = %v", err)
	}
}

func TestAsk(t *testing.T) {
	fs := cluster(t, 3, nil)
	waitFor(t, "all up", 10*time.Second, func() bool { return fs[0].Up("h1") && fs[0].Up("h2") })
	for _, f := range fs {
		if err := f.Answer("name", func(q []byte) []byte { return []byte(string(q) + " " + f.Host()) }); err != nil {
			t.Fatal(err)
		}
	}
	// The answerers' interest reaches the other servers over the routes
	// a moment after they subscribe.
	var got [][]byte
	waitFor(t, "two answers", 10*time.Second, func() bool {
		var err error
		got, err = fs[0].Ask(context.Background(), "name", []byte("hello"), time.Second)
		return err == nil && len(got) == 2
	})
	var s []string
	for _, a := range got {
		s = append(s, string(a))
	}
	slices.Sort(s)
	if !slices.Equal(s, []string{"hello h1", "hello h2"}) {
		t.Errorf("answers %q", s)
	}
}

// TestExternalNATSWithNKey: a host signs in to an existing NATS server with
// an NKey seed file; a host with another key is refused.
func TestExternalNATSWithNKey(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), Nkeys: []*server.NkeyUser{{Nkey: pub}}, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the NATS server did not start")
	}
	t.Cleanup(s.Shutdown)
	open := func(host, seed string) (*Fleet, error) {
		return Open(context.Background(), Config{Name: "nk", Host: host, URL: s.ClientURL(), NKeySeedFile: seed,
			JoinTimeout: 3 * time.Second, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)}, nil)
	}
	f, err := open("a", seedFile)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherFile := filepath.Join(dir, "other.nk")
	os.WriteFile(otherFile, otherSeed, 0o600)
	if f, err := open("b", otherFile); err == nil {
		f.Close()
		t.Error("a host with another NKey connected")
	}
	if f, err := open("c", filepath.Join(dir, "missing.nk")); err == nil {
		f.Close()
		t.Error("a host with a missing seed file connected")
	}
}
