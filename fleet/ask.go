package fleet

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
)

// maxAnswers bounds the answers Ask collects, whatever answers.
const maxAnswers = 1024

// Ask sends data to the subject rexec.<fleet>.ask.<topic>, which every host
// answers with Answer, and returns the answers of the other hosts: as many
// as are up, or what came within wait. A host that does not answer in
// time is left out, not waited for.
func (f *Fleet) Ask(ctx context.Context, topic string, data []byte, wait time.Duration) ([][]byte, error) {
	want := 0
	for _, m := range f.Machines() {
		if m.Up && m.Name != f.cfg.Host {
			want++
		}
	}
	if want == 0 {
		return nil, nil
	}
	inbox := f.nc.NewRespInbox()
	ch := make(chan *nats.Msg, min(want, maxAnswers))
	sub, err := f.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	q := nats.NewMsg(f.names.Subject("ask", Token(topic)))
	q.Reply, q.Data = inbox, data
	q.Header.Set("Rexec-Host", f.cfg.Host) // this host does not answer itself
	if err := f.nc.PublishMsg(q); err != nil {
		return nil, err
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var answers [][]byte
	for len(answers) < want && len(answers) < maxAnswers {
		select {
		case m := <-ch:
			answers = append(answers, m.Data)
		case <-timer.C:
			return answers, nil
		case <-ctx.Done():
			return answers, ctx.Err()
		}
	}
	return answers, nil
}

// Answer has answer called for each question other hosts Ask of topic,
// its result sent back to the asker. It stops with the fleet.
func (f *Fleet) Answer(topic string, answer func(data []byte) []byte) error {
	_, err := f.nc.Subscribe(f.names.Subject("ask", Token(topic)), func(m *nats.Msg) {
		if m.Reply == "" || m.Header.Get("Rexec-Host") == f.cfg.Host {
			return
		}
		_ = m.Respond(answer(m.Data))
	})
	return err
}
