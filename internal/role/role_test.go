package role

import "testing"

func TestOfKeepsTheAdminFlag(t *testing.T) {
	cases := []struct {
		name  string
		role  string
		admin bool
		want  Role
	}{
		{"a-record-from-before-roles-with-admin-is-admin", "", true, Admin},
		{"a-device-has-none", "", false, None},
		{"an-explicit-reader", "reader", false, Reader},
		{"an-explicit-role-wins-over-a-stale-flag", "operator", true, Operator},
		{"an-unknown-role-falls-back-to-the-flag", "root", false, None},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			if got := Of(tt.role, tt.admin); got != tt.want {
				t.Errorf("Of(%q, %v) = %q, want %q", tt.role, tt.admin, got, tt.want)
			}
		})
	}
}

func TestOrderAndUpdates(t *testing.T) {
	if !Admin.AtLeast(Operator) || !Operator.AtLeast(Reader) || Reader.AtLeast(Operator) || None.AtLeast(Reader) {
		t.Error("roles out of order")
	}
	cases := []struct {
		kind    string
		changes bool
		want    Role
	}{
		{"services", false, Operator},
		{"service-policies", false, Operator},
		{"edge-router-policies", false, Operator},
		{"identities", false, Operator},
		{"identities", true, Admin},
		{"routers", false, Admin},
	}
	for _, tt := range cases {
		if got := ForUpdate(tt.kind, tt.changes); got != tt.want {
			t.Errorf("ForUpdate(%q, %v) = %q, want %q", tt.kind, tt.changes, got, tt.want)
		}
	}
	if _, err := Parse("root"); err == nil {
		t.Error("Parse(root) succeeded, want an error naming the choices")
	}
}
