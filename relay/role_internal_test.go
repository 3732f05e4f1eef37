package relay

import "testing"

// TestRoleNames: each role a token may claim is kept as the role of that
// name (no role is a user), and the send limits of each sending role are its
// own, a viewer's a user's, as when roles were strings.
func TestRoleNames(t *testing.T) {
	want := map[string]string{"": "user", "user": "user", "mod": "mod", "admin": "admin", "bot": "bot"}
	if len(knownRoles) != len(want) {
		t.Fatalf("%d known roles, want %d", len(knownRoles), len(want))
	}
	for claim, name := range want {
		if r, ok := knownRoles[claim]; !ok || r.String() != name {
			t.Errorf("role claim %q is kept as %q, want %q", claim, r.String(), name)
		}
	}
	if roleViewer.String() != "viewer" || anonGrant.role.String() != "viewer" {
		t.Errorf("the viewer role is %q, anonymous viewers have %q", roleViewer.String(), anonGrant.role.String())
	}
	for i, name := range sendRoles {
		r := knownRoles[name]
		if roleIndex(r) != i || rateIndex(name) != i {
			t.Errorf("role %q: send limits %d (by name %d), want %d", name, roleIndex(r), rateIndex(name), i)
		}
	}
	if roleIndex(roleViewer) != 0 || rateIndex("viewer") != 0 {
		t.Errorf("a viewer's send limits are %d, want a user's", roleIndex(roleViewer))
	}
}
