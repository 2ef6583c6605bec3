package webapi

import (
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
		m.SlotsMax = s.broker.MaxProcs()
		a, d := s.broker.Running()
		for _, n := range a {
			m.SlotsUsed += n
		}
		for _, n := range d {
			m.SlotsUsed += n
		}
	}
	return []fleet.Machine{m}
}
