// Package natsauth is who may do what on Patchwave's NATS: one permission table (Table,
// Default) from which every service's NATS user is made, the operator and account material of
// a secured deployment (Material), and integrator credentials per tenant (Integrators).
//
// NATS runs in operator mode (decentralized JWT authentication): an operator signs a system
// account and the Patchwave account, and the account's signing key signs one user per service,
// plus an admin, the integrator issuer and a system user. A user's permissions travel in its
// JWT, so the server needs no list of users: integrator users are issued while it runs, expire
// on their own, and are revoked by pushing the account JWT with a revocation to the server's
// resolver, which closes their connections at once.
//
// A service's permissions are derived, not written by hand: it publishes the events whose
// registry entry names it as producer (events.Def.Producer) and its own dead letters, creates
// (never updates or deletes) the streams, uses its declared durable consumers and ordered
// consumers on the streams it projects, owns or reads the KV buckets the table says, and
// receives on its own inbox only (InboxPrefix). README.md describes the model and how to add a
// service, event, consumer or bucket.
package natsauth
