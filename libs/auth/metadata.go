package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/metadata"
)

// gRPC metadata that carries the caller's identity from the gateway to a service. A service
// believes it only from a peer whose certificate names it the forwarder (the gateway): see
// libs/host.
const (
	MetadataSubject        = "x-patchwave-subject"
	MetadataTenant         = "x-patchwave-tenant"
	MetadataRoles          = "x-patchwave-roles"
	MetadataCredential     = "x-patchwave-credential"      //nolint:gosec // G101: a metadata key, not a credential
	MetadataCredentialKind = "x-patchwave-credential-kind" //nolint:gosec // G101: a metadata key, not a credential
)

var identityKeys = []string{MetadataSubject, MetadataTenant, MetadataRoles, MetadataCredential, MetadataCredentialKind}

// OutgoingContext returns ctx whose outgoing metadata carries id, replacing any identity the
// metadata already had (nil id removes it).
func OutgoingContext(ctx context.Context, id *Identity) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	for _, k := range identityKeys {
		delete(md, k)
	}
	if id != nil {
		md.Set(MetadataSubject, id.Subject)
		md.Set(MetadataRoles, strings.Join(id.RoleNames(), ","))
		if id.Tenant != "" {
			md.Set(MetadataTenant, id.Tenant)
		}
		if id.CredentialID != "" {
			md.Set(MetadataCredential, id.CredentialID)
		}
		if id.CredentialKind != "" {
			md.Set(MetadataCredentialKind, id.CredentialKind)
		}
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// ErrNoIdentity means the metadata carries no identity.
var ErrNoIdentity = errors.New("no caller identity in the call's metadata")

// FromMetadata reads and validates the identity of incoming metadata; ErrNoIdentity when it
// names no subject.
func FromMetadata(md metadata.MD) (*Identity, error) {
	one := func(k string) (string, error) {
		v := md.Get(k)
		switch len(v) {
		case 0:
			return "", nil
		case 1:
			return v[0], nil
		}
		return "", fmt.Errorf("metadata %s: given %d times", k, len(v))
	}
	var errs []error
	get := func(k string) string {
		v, err := one(k)
		errs = append(errs, err)
		return v
	}
	id := &Identity{
		Subject: get(MetadataSubject), Tenant: get(MetadataTenant),
		CredentialID: get(MetadataCredential), CredentialKind: get(MetadataCredentialKind),
	}
	roles := get(MetadataRoles)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if id.Subject == "" {
		return nil, ErrNoIdentity
	}
	for r := range strings.SplitSeq(roles, ",") {
		if r != "" {
			id.Roles = append(id.Roles, Role(r))
		}
	}
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("forwarded identity: %w", err)
	}
	return id, nil
}
