// Package role owns the management roles an identity may hold and what each lets it do
// through the management API: reader reads, operator also edits services, policies and
// identities' attributes, admin does everything. An identity with no role (a plain
// device) may not use the management API at all. The controller enforces these on every
// call; the CLI and `umbra mcp` only name them. It must not know about HTTP or the store.
package role

import (
	"fmt"
	"strings"
)

// Role is a management role, ordered: each one may do what the one before it may.
type Role string

// The roles, weakest first. None is a device's: no management access.
const (
	None     Role = ""
	Reader   Role = "reader"
	Operator Role = "operator"
	Admin    Role = "admin"
)

// All lists the roles an identity may be given, weakest first.
var All = []Role{Reader, Operator, Admin}

// rank orders the roles; None is 0.
func (r Role) rank() int {
	switch r {
	case Reader:
		return 1
	case Operator:
		return 2
	case Admin:
		return 3
	}
	return 0
}

// AtLeast reports whether r may do what min may.
func (r Role) AtLeast(min Role) bool { return r.rank() >= min.rank() }

// Parse returns the role s names, or an error naming the valid choices. The empty
// string is None.
func Parse(s string) (Role, error) {
	if s == "" {
		return None, nil
	}
	for _, r := range All {
		if string(r) == s {
			return r, nil
		}
	}
	return None, fmt.Errorf("role %q: want one of %s", s, Choices())
}

// Choices is the valid role names as "reader|operator|admin".
func Choices() string {
	names := make([]string, len(All))
	for i, r := range All {
		names[i] = string(r)
	}
	return strings.Join(names, "|")
}

// Of is the effective role of an identity record whose stored fields are role and
// admin: an explicit role wins; a record from before roles existed has only the admin
// flag, which means Admin.
func Of(role string, admin bool) Role {
	if r, err := Parse(role); err == nil && r != None {
		return r
	}
	if admin {
		return Admin
	}
	return None
}

// Fields are the stored fields (role, admin) for r, keeping admin=true ⇔ role admin.
func Fields(r Role) (string, bool) { return string(r), r == Admin }

// Kinds of the management API, as its path segments, that roles distinguish.
const (
	kindIdentities = "identities"
	kindServices   = "services"
	kindSvcPolicy  = "service-policies"
	kindERPolicy   = "edge-router-policies"
)

// ForUpdate is the weakest role that may PATCH a record of kind; changesRole says the
// update changes an identity's role or admin flag, which only an admin may.
func ForUpdate(kind string, changesRole bool) Role {
	switch kind {
	case kindServices, kindSvcPolicy, kindERPolicy:
		return Operator
	case kindIdentities:
		if changesRole {
			return Admin
		}
		return Operator
	}
	return Admin
}
