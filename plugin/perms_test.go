package plugin

import (
	"errors"
	"strings"
	"testing"
)

func TestAllows(t *testing.T) {
	implicit := Component{Plugin: "p", ID: "c"}
	open := Component{Plugin: "p", ID: "c", UserPerms: []string{}}
	needs := Component{Plugin: "p", ID: "c", UserPerms: []string{"ssh", "settings.view[x]"}}
	for _, tc := range []struct {
		name    string
		c       Component
		perms   []string
		admin   bool
		missing string // "" when allowed
	}{
		{"admin", implicit, nil, true, ""},
		{"no perms, implicit only", implicit, nil, false, `"p/c"`},
		{"the implicit perm", implicit, []string{"p/c"}, false, ""},
		{"every plugin", implicit, []string{"plugin"}, false, ""},
		{"another command's perm", implicit, []string{"p/d", "q/c"}, false, `"p/c"`},
		{"open to every caller", open, nil, false, ""},
		{"user_perms, all of them", needs, []string{"ssh", "settings.view[x]"}, false, ""},
		{"user_perms, one missing", needs, []string{"ssh"}, false, `"settings.view[x]"`},
		{"user_perms, the implicit instead", needs, []string{"p/c"}, false, ""},
		{"a perm's context is part of it", needs, []string{"ssh", "settings.view"}, false, `"settings.view[x]"`},
	} {
		err := tc.c.Allows(tc.perms, tc.admin)
		switch {
		case tc.missing == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.missing != "" && (!errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tc.missing)):
			t.Errorf("%s: %v, want forbidden naming %s", tc.name, err, tc.missing)
		}
	}
}
