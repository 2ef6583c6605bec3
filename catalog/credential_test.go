package catalog_test

import (
	"errors"
	"os"
	"os/user"
	"slices"
	"strconv"
	"testing"

	"github.com/rexec/rexec/catalog"
)

func TestCredentialNone(t *testing.T) {
	cred, err := mustScript(t, "a /bin/true").Credential()
	if cred != nil || err != nil {
		t.Errorf("Credential() = %+v, %v; want nil, nil", cred, err)
	}
}

func TestCredentialNobody(t *testing.T) {
	needUserGroup(t)
	nobody, _ := user.Lookup("nobody")
	nogroup, _ := user.LookupGroup("nogroup")
	uid, _ := strconv.ParseUint(nobody.Uid, 10, 32)
	primary, _ := strconv.ParseUint(nobody.Gid, 10, 32)
	gid, _ := strconv.ParseUint(nogroup.Gid, 10, 32)

	tests := []struct {
		line     string
		uid, gid uint64
	}{
		{"-u=nobody a /bin/true", uid, primary},
		{"-u=nobody -g=nogroup a /bin/true", uid, gid},
		{"-u=" + nobody.Uid + " -g=" + nogroup.Gid + " a /bin/true", uid, gid},
		{"-g=nogroup a /bin/true", uint64(os.Getuid()), gid},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			cred, err := mustScript(t, tt.line).Credential()
			if err != nil {
				t.Fatal(err)
			}
			if uint64(cred.Uid) != tt.uid || uint64(cred.Gid) != tt.gid {
				t.Errorf("uid:gid = %d:%d, want %d:%d", cred.Uid, cred.Gid, tt.uid, tt.gid)
			}
			if cred.NoSetGroups {
				t.Error("NoSetGroups is set: the server's supplementary groups would leak into the process")
			}
			if cred.Groups == nil {
				t.Error("Groups is nil, want a list (possibly empty)")
			}
		})
	}
}

func TestCredentialSupplementaryGroups(t *testing.T) {
	u, err := user.Current()
	if err != nil {
		t.Skipf("no current user: %v", err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		t.Skipf("no group list for %s: %v", u.Username, err)
	}
	cred, err := mustScript(t, "-u="+u.Username+" a /bin/true").Credential()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		gid, _ := strconv.ParseUint(id, 10, 32)
		if !slices.Contains(cred.Groups, uint32(gid)) {
			t.Errorf("Groups %v lacks %s, a group of %s", cred.Groups, id, u.Username)
		}
	}
}

func TestCredentialNumericWithoutEntry(t *testing.T) {
	// High ids that no passwd or group file on a test machine holds.
	const uid, gid = 3999999901, 3999999902
	if _, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		t.Skipf("uid %d exists here", uid)
	}
	cred, err := mustScript(t, "-u=3999999901 -g=3999999902 a /bin/true").Credential()
	if err != nil {
		t.Fatal(err)
	}
	if cred.Uid != uid || cred.Gid != gid || len(cred.Groups) != 0 {
		t.Errorf("cred = %+v, want %d:%d and no groups", cred, uid, gid)
	}
}

// A user deleted after the exectab was loaded is reported when a run asks.
func TestCredentialUnknownAtRunTime(t *testing.T) {
	s := &catalog.Script{Name: "a", Path: "/bin/true", Concurrency: 1, User: "rexec-no-such-user"}
	if _, err := s.Credential(); !errors.Is(err, catalog.ErrUnknownUser) {
		t.Errorf("Credential() error = %v, want ErrUnknownUser", err)
	}
	s = &catalog.Script{Name: "a", Path: "/bin/true", Concurrency: 1, Group: "rexec-no-such-group"}
	if _, err := s.Credential(); !errors.Is(err, catalog.ErrUnknownGroup) {
		t.Errorf("Credential() error = %v, want ErrUnknownGroup", err)
	}
}
