package catalog

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// Credential resolves User and Group (-u, -g) into what child.Spec.Credential
// takes. It returns nil, nil when the script sets neither: the process runs
// as the server does. Names are looked up first, then numeric ids:
//   - -u: the user's uid, its primary group (or -g's) and its supplementary
//     groups, as a login would have. A numeric uid with no passwd entry is
//     accepted only together with -g, since its primary group is unknown.
//   - -g alone: the server's uid, that group, and no supplementary groups.
//     A numeric gid with no group entry is used as it is.
//
// A name that resolves to nothing is ErrUnknownUser or ErrUnknownGroup. The
// lookups are made at each call, so a change to /etc/passwd or /etc/group
// is seen; Parse calls it once per script so that a bad -u or -g is refused
// at load time with its line number. Whether the server may switch to these
// ids (it needs CAP_SETUID and CAP_SETGID, in practice root) shows only
// when the process starts.
func (s *Script) Credential() (*syscall.Credential, error) {
	if s.User == "" && s.Group == "" {
		return nil, nil
	}
	cred := &syscall.Credential{Uid: uint32(os.Getuid()), Groups: []uint32{}}
	gidKnown := false
	if s.User != "" {
		u, err := lookupUser(s.User)
		if err != nil {
			return nil, err
		}
		cred.Uid = u.uid
		if u.u != nil {
			gid, err := parseID(u.u.Gid)
			if err != nil {
				return nil, fmt.Errorf("user %q (-u): primary group %q: %w", s.User, u.u.Gid, err)
			}
			cred.Gid, gidKnown = gid, true
			ids, err := u.u.GroupIds()
			if err != nil {
				return nil, fmt.Errorf("user %q (-u): supplementary groups: %w", s.User, err)
			}
			for _, id := range ids {
				gid, err := parseID(id)
				if err != nil {
					return nil, fmt.Errorf("user %q (-u): group %q: %w", s.User, id, err)
				}
				cred.Groups = append(cred.Groups, gid)
			}
		}
	}
	if s.Group != "" {
		gid, err := lookupGroup(s.Group)
		if err != nil {
			return nil, err
		}
		cred.Gid, gidKnown = gid, true
	}
	if !gidKnown {
		return nil, fmt.Errorf("%w %q (-u): uid %d has no passwd entry, so its group is unknown: add -g", ErrUnknownUser, s.User, cred.Uid)
	}
	return cred, nil
}

type resolvedUser struct {
	uid uint32
	u   *user.User // nil for a numeric uid without a passwd entry
}

func lookupUser(name string) (resolvedUser, error) {
	u, err := user.Lookup(name)
	if err == nil {
		uid, err := parseID(u.Uid)
		if err != nil {
			return resolvedUser{}, fmt.Errorf("user %q (-u): uid %q: %w", name, u.Uid, err)
		}
		return resolvedUser{uid: uid, u: u}, nil
	}
	if !errors.As(err, new(user.UnknownUserError)) {
		return resolvedUser{}, fmt.Errorf("look up user %q (-u): %w", name, err)
	}
	uid, perr := parseID(name)
	if perr != nil {
		return resolvedUser{}, fmt.Errorf("%w %q (-u)", ErrUnknownUser, name)
	}
	u, err = user.LookupId(name)
	switch {
	case err == nil:
		return resolvedUser{uid: uid, u: u}, nil
	case errors.As(err, new(user.UnknownUserIdError)):
		return resolvedUser{uid: uid}, nil
	}
	return resolvedUser{}, fmt.Errorf("look up uid %s (-u): %w", name, err)
}

func lookupGroup(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err == nil {
		gid, err := parseID(g.Gid)
		if err != nil {
			return 0, fmt.Errorf("group %q (-g): gid %q: %w", name, g.Gid, err)
		}
		return gid, nil
	}
	if !errors.As(err, new(user.UnknownGroupError)) {
		return 0, fmt.Errorf("look up group %q (-g): %w", name, err)
	}
	gid, perr := parseID(name)
	if perr != nil {
		return 0, fmt.Errorf("%w %q (-g)", ErrUnknownGroup, name)
	}
	return gid, nil // with or without a group entry, the number is the gid
}

// parseID parses a decimal uid or gid. 2^32-1 is refused: to setuid and
// setgid it means "leave unchanged".
func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, err
	}
	if n == math.MaxUint32 {
		return 0, strconv.ErrRange
	}
	return uint32(n), nil
}
