package webapi

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"time"

	"github.com/rexec/rexec/fleet"
)

// Fleet is what the API shows of the fleet this host belongs to: package
// fleet's membership, or nil on a single host, which is a fleet of one.
type Fleet interface {
	// Names are the fleet's names (its name among them).
	Names() fleet.Names
	// Host is this host's name.
	Host() string
	// Machines lists the fleet's hosts, this one included, by name.
	Machines() []fleet.Machine
	// Ask asks every other host up a question of topic and returns the
	// answers that came within wait (package fleet).
	Ask(ctx context.Context, topic string, data []byte, wait time.Duration) ([][]byte, error)
}

// TopicAttached is the question whose answer is a host's attached runs
// (AttachedRuns), for GET /process?fleet=1.
const TopicAttached = "attached-runs"

// attachedWait bounds the wait for the other hosts' attached runs.
const attachedWait = 2 * time.Second

// hostRuns is one host's attached runs, as it answers TopicAttached.
type hostRuns struct {
	Host string    `json:"host"`
	Runs []runInfo `json:"runs"`
}

// AttachedRuns is this host's answer to TopicAttached: its attached runs,
// each with its host.
func (s *Server) AttachedRuns() []byte {
	b, _ := json.Marshal(hostRuns{Host: s.cfg.Fleet.Host(), Runs: s.attachedRuns(s.cfg.Fleet.Host())})
	return b
}

// fleetRuns are the attached runs of the fleet's other hosts that answered.
func (s *Server) fleetRuns(ctx context.Context) []runInfo {
	answers, err := s.cfg.Fleet.Ask(ctx, TopicAttached, nil, attachedWait)
	if err != nil {
		s.log.Warn().Err(err).Msg("fleet: asking the other hosts for their attached runs")
	}
	var runs []runInfo
	for _, a := range answers {
		var hr hostRuns
		if json.Unmarshal(a, &hr) != nil || fleet.CheckName(hr.Host) != nil {
			continue
		}
		for _, r := range hr.Runs {
			r.Host = hr.Host
			runs = append(runs, r)
		}
	}
	return runs
}

// handleMachines is GET /fleet/v1/machines: the fleet's hosts, for the
// admin (a guest key is refused by authorize, as everywhere outside its
// APIs).
func (s *Server) handleMachines(w http.ResponseWriter, r *http.Request) {
	name, host := "", ""
	if s.cfg.Fleet != nil {
		name, host = s.cfg.Fleet.Names().Fleet(), s.cfg.Fleet.Host()
	} else {
		host = s.fleetMachines()[0].Name
	}
	writeJSON(w, http.StatusOK, map[string]any{"fleet": name, "host": host, "machines": s.fleetMachines()})
}

// fleetMachines are the fleet's machines; on a single host, this one.
func (s *Server) fleetMachines() []fleet.Machine {
	if s.cfg.Fleet != nil {
		return s.cfg.Fleet.Machines()
	}
	host, _ := os.Hostname()
	m := fleet.Machine{Name: host, Scripts: []string{}, Labels: []string{}, Up: true, LastHeartbeat: time.Now(), StartedAt: s.started}
	if s.cfg.SelfURL != nil {
		m.Address = s.cfg.SelfURL()
	}
	if s.cfg.Scripts != nil {
		if cat := s.cfg.Scripts(); cat != nil {
			m.Scripts = cat.Names()
		}
	}
	if s.broker != nil {
		m.SlotsUsed, m.SlotsMax = s.broker.Total(), s.broker.MaxProcs()
	}
	return []fleet.Machine{m}
}
