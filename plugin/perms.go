package plugin

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// AllPlugins is the perm that may call every command (the seed's "plugin").
const AllPlugins = "plugin"

// ErrForbidden: the caller lacks a perm the command requires.
var ErrForbidden = errors.New("forbidden")

// ParsePerm checks a perm as a caller's key carries it, or a manifest
// writes it: "name" or "name[context]".
func ParsePerm(s string) (Perm, error) { return parsePerm(s) }

// Allows says whether a caller with perms may use the command c (admin: the
// server's admin, who may use every command), and if not, which perm it
// lacks. As the seed says:
//
//   - AllPlugins opens every command;
//   - every command requires, implicitly, the perm of its full id
//     ("<plugin>/<id>"), which is enough to use it;
//   - user_perms, when the manifest gives it, are perms the caller must all
//     have instead: an empty list opens the command to every caller.
func (c Component) Allows(perms []string, admin bool) error {
	has := func(p string) bool { return slices.Contains(perms, p) }
	switch {
	case admin, has(AllPlugins), has(c.FullID()):
		return nil
	case c.UserPerms == nil:
		return fmt.Errorf("%w: %s needs the perm %q (or %q)", ErrForbidden, c.FullID(), c.FullID(), AllPlugins)
	}
	var missing []string
	for _, p := range c.UserPerms {
		if !has(p) {
			missing = append(missing, fmt.Sprintf("%q", p))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s needs the perm(s) %s (or %q, or %q)", ErrForbidden, c.FullID(),
		strings.Join(missing, ", "), c.FullID(), AllPlugins)
}
