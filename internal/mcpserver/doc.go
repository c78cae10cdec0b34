// Package mcpserver is `umbra mcp`: a Model Context Protocol server (on the official Go
// SDK) that hands an AI assistant a bounded, read-mostly view of the fleet. It owns the
// tools — their schemas, their hints, the shape and size of their answers — and the audit
// of each call. It talks to the controller only through an internal/api Client, whose
// identity (and key) stays in this process: no tool result, error or log line carries a
// key, a PEM block or an enrollment token, except the token of create_identity and
// create_enrollment when those tools are named explicitly. It must not decide what an
// identity may do: the controller enforces roles on every call; this package only
// declines to offer write tools it was not asked to offer.
package mcpserver
