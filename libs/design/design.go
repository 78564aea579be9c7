// Package design is the read side of Patchwave's service design: the JetStream KV bucket the
// scheduler keeps it in, the format of its documents, and View, a watcher that keeps an
// up-to-date in-memory copy for other services (reporting, the AWS adapter's accounts, the
// notifier) to read, so that no service keeps a copy of its own.
//
// # Bucket and keys
//
// The bucket is Bucket ("patchwave-design"). Its keys:
//
//	tenants.<tenant>             one typesv1.TenantDesign per tenant: settings, cloud accounts,
//	                             waves, freezes and overrides
//	global                       the typesv1.GlobalDesign: provider-wide freezes
//	requests.<tenant>.<id>       one typesv1.ServiceRequest per service request
//
// Values are protobuf JSON (protojson, lowerCamelCase names), so `nats kv get` shows them as
// the REST API does; unknown fields are ignored when reading, so adding a field is not
// breaking. Every write is a compare-and-set by the scheduler, the only writer; a key's KV
// revision is the ETag of everything in its document. A deleted tenant keeps its key with
// TenantDesign.deleted set (a tombstone, so its deletion is audited like any change): View
// treats it as unknown.
package design

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Bucket is the name of the service design's KV bucket.
const Bucket = "patchwave-design"

// ProviderTenant is the tenant id reserved for provider-wide things: the audit events of the
// global document are published on patch.provider.design.changed. No customer tenant may have
// this id.
const ProviderTenant = "provider"

// Key prefixes and the global key.
const (
	tenantPrefix  = "tenants."
	requestPrefix = "requests."
	// KeyGlobal is the key of the provider-wide document.
	KeyGlobal = "global"
)

// History is how many revisions of each key the bucket keeps. The scheduler's audit relay
// reads every revision from the bucket's stream; history lets it find revisions that were
// overwritten while it was not running (up to History-1 later writes to the same key).
const History = 16

// TenantKey is the key of a tenant's document.
func TenantKey(tenant string) string { return tenantPrefix + tenant }

// RequestKey is the key of one service request.
func RequestKey(tenant, id string) string { return requestPrefix + tenant + "." + id }

// RequestFilter is the key filter matching every service request of a tenant.
func RequestFilter(tenant string) string { return requestPrefix + tenant + ".>" }

// Key filters of the kinds of keys.
const (
	// TenantsFilter matches every tenant document.
	TenantsFilter = tenantPrefix + ">"
	// RequestsFilter matches every service request.
	RequestsFilter = requestPrefix + ">"
)

// Kind is the kind of a key.
type Kind int

// Kinds of keys.
const (
	KindUnknown Kind = iota
	KindTenant
	KindGlobal
	KindRequest
)

// ParsedKey is a key taken apart.
type ParsedKey struct {
	Kind Kind
	// Tenant is set for KindTenant and KindRequest.
	Tenant string
	// RequestID is set for KindRequest.
	RequestID string
}

// ParseKey takes a key apart; Kind is KindUnknown for a key that is none of the above.
func ParseKey(key string) ParsedKey {
	switch {
	case key == KeyGlobal:
		return ParsedKey{Kind: KindGlobal}
	case strings.HasPrefix(key, tenantPrefix):
		t := key[len(tenantPrefix):]
		if t == "" || strings.Contains(t, ".") {
			return ParsedKey{}
		}
		return ParsedKey{Kind: KindTenant, Tenant: t}
	case strings.HasPrefix(key, requestPrefix):
		t, id, ok := strings.Cut(key[len(requestPrefix):], ".")
		if !ok || t == "" || id == "" || strings.Contains(id, ".") {
			return ParsedKey{}
		}
		return ParsedKey{Kind: KindRequest, Tenant: t, RequestID: id}
	}
	return ParsedKey{}
}

// BucketConfig is the bucket's configuration; the scheduler creates the bucket with it.
// replicas is 1 on a single server, 3 on a cluster.
func BucketConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Patchwave service design (owned by the scheduler): tenants, accounts, waves, freezes, service requests",
		History:     History,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		// A document holds a whole tenant's design; the scheduler bounds its parts (see its
		// README) to stay well under this.
		MaxValueSize: 1 << 20,
	}
}

var (
	marshal   = protojson.MarshalOptions{}
	unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}
)

// Marshal encodes a document (TenantDesign, GlobalDesign or ServiceRequest) as stored.
func Marshal(m proto.Message) ([]byte, error) {
	b, err := marshal.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return b, nil
}

// Unmarshal decodes a stored document into m.
func Unmarshal(b []byte, m proto.Message) error {
	if err := unmarshal.Unmarshal(b, m); err != nil {
		return fmt.Errorf("decode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

// DecodeTenant decodes a tenant document.
func DecodeTenant(b []byte) (*typesv1.TenantDesign, error) {
	d := &typesv1.TenantDesign{}
	return d, Unmarshal(b, d)
}

// DecodeGlobal decodes the global document.
func DecodeGlobal(b []byte) (*typesv1.GlobalDesign, error) {
	d := &typesv1.GlobalDesign{}
	return d, Unmarshal(b, d)
}

// DecodeRequest decodes a service request.
func DecodeRequest(b []byte) (*typesv1.ServiceRequest, error) {
	d := &typesv1.ServiceRequest{}
	return d, Unmarshal(b, d)
}

// ErrNotReady is returned by View's getters that wait for the initial values when they do
// not arrive in time.
var ErrNotReady = errors.New("the service design is not loaded yet")

// readyWait bounds how long a getter that takes a context waits for the initial values.
const readyWait = 10 * time.Second
