package store

import "time"

// Kind names a collection of records; it is also the management API's path segment.
type Kind string

// The kinds the controller stores.
const (
	Identities         Kind = "identities"
	Routers            Kind = "routers"
	Services           Kind = "services"
	ServicePolicies    Kind = "service-policies"
	EdgeRouterPolicies Kind = "edge-router-policies"
)

// Controllers are the members of the controller cluster. They are not among Kinds: the
// generic management paths do not create or change them.
const Controllers Kind = "controllers"

// Kinds lists every named kind, in display order.
var Kinds = []Kind{Identities, Routers, Services, ServicePolicies, EdgeRouterPolicies}

// Meta is what every named record has.
type Meta struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Cert describes the certificate a subject was last issued.
type Cert struct {
	Serial      string    `json:"serial"`
	Fingerprint string    `json:"fingerprint"`
	NotAfter    time.Time `json:"not_after"`
}

// Identity is an enrolled or enrolling device or operator.
type Identity struct {
	Meta
	Attributes []string `json:"attributes"`
	// Admin is true exactly when the identity's role is admin; a record from before
	// roles existed has only this flag (see role.Of).
	Admin bool `json:"admin"`
	// Role is the identity's management role (reader, operator, admin), empty for a
	// device, which may not use the management API.
	Role string `json:"role,omitempty"`
	Cert *Cert  `json:"cert,omitempty"`
}

// Router is an edge or relay router.
type Router struct {
	Meta
	Attributes []string `json:"attributes"`
	Cert       *Cert    `json:"cert,omitempty"`
}

// Controller is a member of the controller cluster, named at `edge create controller`
// and given its address and certificate when it joins.
type Controller struct {
	Meta
	// Address is HOST:PORT of the member's port (management API and Raft).
	Address string `json:"address,omitempty"`
	Cert    *Cert  `json:"cert,omitempty"`
}

// Service is something identities host and dial.
type Service struct {
	Meta
	Attributes []string `json:"attributes"`
	// Host is PROTO:ADDR where a binding agent delivers the traffic on its own side.
	Host string `json:"host,omitempty"`
	// Intercept is PROTO:ADDR where a dialing agent listens by default.
	Intercept string `json:"intercept,omitempty"`
}

// Policy types of a ServicePolicy.
const (
	PolicyDial = "dial"
	PolicyBind = "bind"
)

// ServicePolicy grants the identities matching Identities the right to Dial or Bind the
// services matching Services. Roles are #attribute, @name or #all.
type ServicePolicy struct {
	Meta
	Type       string   `json:"type"`
	Identities []string `json:"identities"`
	Services   []string `json:"services"`
}

// EdgeRouterPolicy lets the identities matching Identities use the routers matching Routers.
type EdgeRouterPolicy struct {
	Meta
	Identities []string `json:"identities"`
	Routers    []string `json:"routers"`
}

// Enrollment is an outstanding one-time token, keyed by its jti.
type Enrollment struct {
	JTI       string    `json:"jti"`
	Kind      Kind      `json:"kind"` // Identities or Routers
	SubjectID string    `json:"subject_id"`
	Method    string    `json:"method"` // "ott" or "router"
	ExpiresAt time.Time `json:"expires_at"`
}

// Revocation records a certificate serial that must no longer be accepted.
type Revocation struct {
	Serial    string    `json:"serial"`
	Kind      Kind      `json:"kind"`
	Name      string    `json:"name"`
	RevokedAt time.Time `json:"revoked_at"`
	// NotAfter is the certificate's own expiry, after which the record may be pruned.
	NotAfter time.Time `json:"not_after"`
}
