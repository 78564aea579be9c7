package natsauth

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/nats-io/jwt/v2"

	"github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/events"
)

// Users that are not services. Their names are reserved: no service may take one.
const (
	// UserAdmin may do anything in the Patchwave account: patchd's own connection, operators'
	// tools (the nats CLI) and tests that read the streams.
	UserAdmin = "admin"
	// UserIntegrations issues integrator credentials: it creates, reads and deletes the
	// integrators' consumers and nothing else (see Integrators).
	UserIntegrations = "integrations"
	// UserSystem is the system account's user: it pushes the account JWT with revocations to the
	// server's resolver and looks it up.
	UserSystem = "sys"
)

// MaxControlLine is the longest protocol line a secured server must accept, in bytes (its
// max_control_line): a user's JWT travels in its CONNECT line, and a service's permissions list
// tens of subjects, more than the default 4 KiB holds.
const MaxControlLine = 64 * 1024

// integratorPrefix starts every integrator consumer and user name: "integ_<tenant>_<name>".
const integratorPrefix = "integ_"

// Table is the permission table: what every service does on NATS. A service's NATS user may do
// exactly what its entry and the event registry declare, and nothing else:
//
//   - publish the events whose events.Def names it as Producer, and its own dead letters
//     (dlq.<service>.>);
//   - create (never update or delete) the Patchwave streams, which every bus ensures at start;
//   - create, read from and acknowledge its durable consumers (Handlers), named
//     "<service>_<handler>", and no other service's;
//   - create, read from and delete ordered consumers on the streams it projects (Projects);
//   - create, write and read the KV buckets it owns, and read and watch those it reads
//     (Buckets);
//   - subscribe to its own inbox, InboxPrefix(<service>).
//
// Default is the table of the running system; tests build their own.
type Table struct {
	// Services lists every service that connects to NATS. Required.
	Services []Service
	// Streams names every stream the bus ensures (libs/bus.Streams); every service may create
	// them. Optional, default the three Patchwave streams.
	Streams []string
	// Buckets lists the JetStream KV buckets, each with its owner and readers. Optional.
	Buckets []Bucket
}

// Service is one service's entry in the Table.
type Service struct {
	// Name of the service, as its host.Component names itself. Required.
	Name string
	// Handlers are its stage handlers, each a durable pull consumer "<service>_<handler>".
	Handlers []Handler
	// Projects lists the streams its projections read with ordered consumers.
	Projects []string
}

// Handler is one durable consumer of a service, "<service>_<name>": a bus handler
// (bus.HandlerSpec.Name and the stream of its subjects), or a consumer the service runs itself,
// for example on the stream of a bucket it owns or reads (BucketStream).
type Handler struct {
	// Name is the handler name, e.g. "TakeSnapshotOnJobRequested". Required.
	Name string
	// Stream is the stream its subjects are in, e.g. events.StreamTenant, or BucketStream of
	// one of the table's buckets. Required.
	Stream string
}

// Bucket is one JetStream KV bucket: its owner creates it and writes it; readers get and watch
// its keys.
type Bucket struct {
	// Name of the bucket (its stream is KV_<Name>). Required.
	Name string
	// Owner is the service that creates and writes the bucket. Required.
	Owner string
	// Readers are the services that read and watch it. Optional.
	Readers []string
}

// Default is Patchwave's permission table. Add a service, handler, projection stream or bucket
// here when the code adds one; the host refuses to run a component whose handlers or
// projections are missing (Table.Check), and the event registry gives publishing rights.
var Default = Table{
	Services: []Service{
		// The catalog reads tenants' approvals (patch.<tenant>.baseline.*) besides its own
		// catalog events.
		{Name: "catalog", Projects: []string{events.StreamCatalog, events.StreamTenant}},
		{
			Name: "scheduler",
			Handlers: []Handler{
				// The audit relay of the design bucket (services/scheduler adapters.AuditFeed).
				{Name: "design_audit", Stream: BucketStream(design.Bucket)},
			},
			Projects: []string{events.StreamCatalog, events.StreamTenant},
		},
		{
			Name: "snapshotter",
			Handlers: []Handler{
				{Name: "TakeSnapshotOnJobRequested", Stream: events.StreamTenant},
				{Name: "TrackSnapshots", Stream: events.StreamTenant},
				{Name: "StartRestoreOnRestoreRequested", Stream: events.StreamTenant},
				{Name: "TrackRestores", Stream: events.StreamTenant},
				{Name: "RestoreOnInstallFailed", Stream: events.StreamTenant},
			},
			Projects: []string{events.StreamTenant},
		},
		{
			Name: "installer",
			Handlers: []Handler{
				{Name: "InstallOnSnapshotCreated", Stream: events.StreamTenant},
				{Name: "TrackInstallations", Stream: events.StreamTenant},
				// Assessments (scan.requested -> scan.started -> scan.completed|failed).
				{Name: "ScanOnScanRequested", Stream: events.StreamTenant},
				{Name: "TrackScans", Stream: events.StreamTenant},
			},
			Projects: []string{events.StreamTenant},
		},
		{
			Name: "notifier",
			Handlers: []Handler{
				{Name: "NotifyOnOutcome", Stream: events.StreamTenant},
				{Name: "NotifyOnBaselinePublished", Stream: events.StreamCatalog},
				// The audit relay of the subscriptions bucket (services/notifier adapters).
				{Name: "subscriptions_audit", Stream: BucketStream("notifier_subscriptions")},
			},
			Projects: []string{events.StreamTenant},
		},
		// Reporting projects the tenant stream (compliance, audit) and the catalog stream (the
		// baselines and certification times compliance is measured against).
		{Name: "reporting", Projects: []string{events.StreamTenant, events.StreamCatalog}},
		// The gateway publishes the audit events (patch.<tenant>.audit.recorded) and keeps the
		// API keys in a bucket of its own.
		{Name: "gateway"},
	},
	Buckets: []Bucket{
		// The service design is the scheduler's; others read it through libs/design's View.
		{Name: design.Bucket, Owner: "scheduler", Readers: []string{"catalog", "reporting", "snapshotter", "installer", "gateway", "notifier"}},
		// Firing's claims (services/scheduler adapters.Claims): one key per occurrence and per
		// tenant cycle, created once, so an occurrence fires once with several replicas.
		{Name: "patchwave-firing", Owner: "scheduler"},
		// The API keys (services/gateway/internal/apikeys), hashed.
		{Name: "patchwave-credentials", Owner: "gateway"},
		// The catalog's own state (services/catalog/internal/app).
		{Name: "catalog_patches", Owner: "catalog"},
		{Name: "catalog_baselines", Owner: "catalog"},
		{Name: "catalog_approvals", Owner: "catalog"},
		{Name: "catalog_approval_policies", Owner: "catalog"},
		{Name: "catalog_rules", Owner: "catalog"},
		{Name: "catalog_sources", Owner: "catalog"},
		// The notifier's subscriptions and its delivery log with the retry schedule
		// (services/notifier/internal/adapters).
		{Name: "notifier_subscriptions", Owner: "notifier"},
		{Name: "notifier_deliveries", Owner: "notifier"},
	},
}

var (
	tokenPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	bucketPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// streams returns the stream names the bus ensures.
func (t Table) streams() []string {
	if len(t.Streams) > 0 {
		return t.Streams
	}
	return []string{events.StreamTenant, events.StreamCatalog, events.StreamDLQ}
}

// Validate reports every problem with the table: names that are not subject tokens, duplicates,
// unknown streams or services, reserved names, and events whose producer has no entry.
func (t Table) Validate() error {
	var errs []error
	streams := t.streams()
	consumable := slices.Clone(streams)
	for _, b := range t.Buckets {
		consumable = append(consumable, BucketStream(b.Name))
	}
	seen := map[string]bool{}
	for i, s := range t.Services {
		at := fmt.Sprintf("Services[%d] %q", i, s.Name)
		switch {
		case !tokenPattern.MatchString(s.Name):
			errs = append(errs, fmt.Errorf("%s: Name must match %s", at, tokenPattern))
		case s.Name == UserAdmin || s.Name == UserIntegrations || s.Name == UserSystem || strings.HasPrefix(s.Name, integratorPrefix):
			errs = append(errs, fmt.Errorf("%s: Name is reserved (%s, %s, %s and %s*)", at, UserAdmin, UserIntegrations, UserSystem, integratorPrefix))
		case seen[s.Name]:
			errs = append(errs, fmt.Errorf("%s: Name is declared twice", at))
		}
		seen[s.Name] = true
		handlers := map[string]bool{}
		for j, h := range s.Handlers {
			if !tokenPattern.MatchString(h.Name) || len(s.Name)+1+len(h.Name) > 255 {
				errs = append(errs, fmt.Errorf("%s: Handlers[%d] %q: Name must match %s", at, j, h.Name, tokenPattern))
			}
			if handlers[h.Name] {
				errs = append(errs, fmt.Errorf("%s: Handlers[%d] %q: declared twice", at, j, h.Name))
			}
			handlers[h.Name] = true
			if !slices.Contains(consumable, h.Stream) {
				errs = append(errs, fmt.Errorf("%s: Handlers[%d] %q: Stream %q is none of %v", at, j, h.Name, h.Stream, consumable))
			}
			for _, b := range t.Buckets {
				if h.Stream == BucketStream(b.Name) && b.Owner != s.Name && !slices.Contains(b.Readers, s.Name) {
					errs = append(errs, fmt.Errorf("%s: Handlers[%d] %q: bucket %s is neither owned nor read by the service", at, j, h.Name, b.Name))
				}
			}
		}
		for j, st := range s.Projects {
			if !slices.Contains(streams, st) {
				errs = append(errs, fmt.Errorf("%s: Projects[%d]: stream %q is none of %v", at, j, st, streams))
			}
		}
	}
	for i, st := range t.Streams {
		if !tokenPattern.MatchString(st) {
			errs = append(errs, fmt.Errorf("Streams[%d] %q: must match %s", i, st, tokenPattern))
		}
	}
	buckets := map[string]bool{}
	for i, b := range t.Buckets {
		at := fmt.Sprintf("Buckets[%d] %q", i, b.Name)
		if !bucketPattern.MatchString(b.Name) {
			errs = append(errs, fmt.Errorf("%s: Name must match %s", at, bucketPattern))
		}
		if buckets[b.Name] {
			errs = append(errs, fmt.Errorf("%s: declared twice", at))
		}
		buckets[b.Name] = true
		if !seen[b.Owner] {
			errs = append(errs, fmt.Errorf("%s: Owner %q is not a service of the table", at, b.Owner))
		}
		for _, r := range b.Readers {
			if !seen[r] {
				errs = append(errs, fmt.Errorf("%s: reader %q is not a service of the table", at, r))
			}
		}
	}
	for _, d := range events.Defs() {
		if !seen[d.Producer] {
			errs = append(errs, fmt.Errorf("event %s: producer %q is not a service of the table", d.Message, d.Producer))
		}
	}
	return errors.Join(errs...)
}

// Service returns the entry of the named service.
func (t Table) Service(name string) (Service, bool) {
	for _, s := range t.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// Check reports what a running service does on NATS that its entry does not declare: a
// handler (durable consumer) or a projection of a stream. Its user would be refused those at
// run time with bare permission violations; the host calls Check first to say what to declare.
func (t Table) Check(service string, handlers []Handler, projects []string) error {
	s, ok := t.Service(service)
	if !ok {
		return fmt.Errorf("%s: service is not in the NATS permission table (libs/natsauth Default)", service)
	}
	var errs []error
	for _, h := range handlers {
		if !slices.Contains(s.Handlers, h) {
			errs = append(errs, fmt.Errorf("%s: handler %s on %s is not in the NATS permission table (libs/natsauth Default)", service, h.Name, h.Stream))
		}
	}
	for _, st := range projects {
		if !slices.Contains(s.Projects, st) {
			errs = append(errs, fmt.Errorf("%s: projections of %s are not in the NATS permission table (libs/natsauth Default)", service, st))
		}
	}
	return errors.Join(errs...)
}

// durables returns every durable consumer name of the table on stream, by service.
func (t Table) durables(stream string) map[string][]string {
	out := map[string][]string{}
	for _, s := range t.Services {
		for _, h := range s.Handlers {
			if h.Stream == stream {
				out[s.Name] = append(out[s.Name], ConsumerName(s.Name, h.Name))
			}
		}
	}
	return out
}

// ConsumerName returns the durable consumer name of a service's handler, "<service>_<handler>"
// (the name libs/bus gives it).
func ConsumerName(service, handler string) string { return service + "_" + handler }

// InboxPrefix returns the inbox prefix of a user, "_INBOX.<user>": the only subjects a
// Patchwave user may subscribe to are under it, so no user can read another's replies (the
// messages its pull consumers deliver). Connect with nats.CustomInboxPrefix(InboxPrefix(user)).
func InboxPrefix(user string) string { return "_INBOX." + user }

// Permissions returns the NATS permissions of a service's user.
func (t Table) Permissions(service string) (jwt.Permissions, error) {
	if err := t.Validate(); err != nil {
		return jwt.Permissions{}, fmt.Errorf("permission table: %w", err)
	}
	s, ok := t.Service(service)
	if !ok {
		return jwt.Permissions{}, fmt.Errorf("service %q: not in the permission table", service)
	}
	var p jwt.Permissions
	pub := &p.Pub.Allow
	for _, d := range events.Defs() {
		if d.Producer == service {
			pub.Add(d.Pattern())
		}
	}
	pub.Add(events.RootDLQ + "." + service + ".>")
	for _, st := range t.streams() {
		// Create leaves a stream that has the definition alone; update and delete are the
		// admin's (bus.EnsureStreams creates first and updates only a changed definition).
		pub.Add(apiStreamCreate(st), apiStreamInfo(st))
	}
	for _, h := range s.Handlers {
		pub.Add(durableConsumer(h.Stream, ConsumerName(service, h.Name))...)
	}
	wildcard := map[string]bool{}
	for _, st := range s.Projects {
		pub.Add(orderedConsumers(st)...)
		pub.Add(streamReads(st)...)
		wildcard[st] = true
	}
	for _, b := range t.Buckets {
		stream := BucketStream(b.Name)
		switch {
		case b.Owner == service:
			// Creating a bucket reads the account's JetStream info first.
			pub.Add(apiStreamCreate(stream), apiStreamUpdate(stream), "$KV."+b.Name+".>", "$JS.API.INFO")
		case slices.Contains(b.Readers, service):
		default:
			continue
		}
		pub.Add(streamReads(stream)...)
		pub.Add(watchers(stream)...)
		wildcard[stream] = true
	}
	// Ordered consumers have random names, and NATS wildcards match whole tokens only, so the
	// grants above let a service create, read from and delete any consumer on the streams it
	// reads. Every other service's durable consumers are taken out again by name.
	for st := range wildcard {
		for owner, names := range t.durables(st) {
			for _, c := range names {
				p.Pub.Deny.Add(apiConsumerDelete(st, c))
				if owner != service {
					p.Pub.Deny.Add(apiConsumerCreate(st, c), apiConsumerCreate(st, c)+".>", apiConsumerNext(st, c), apiConsumerInfo(st, c))
				}
			}
		}
	}
	// A durable consumer is never deleted by its service either.
	for _, h := range s.Handlers {
		p.Pub.Deny.Add(apiConsumerDelete(h.Stream, ConsumerName(service, h.Name)))
	}
	p.Sub.Allow.Add(InboxPrefix(service) + ".>")
	sortPermissions(&p)
	return p, nil
}

// AdminPermissions are UserAdmin's: everything in the account.
func AdminPermissions() jwt.Permissions {
	var p jwt.Permissions
	p.Pub.Allow.Add(">")
	p.Sub.Allow.Add(">")
	return p
}

// IntegrationsPermissions are UserIntegrations': create, inspect, list and delete consumers of
// the tenant stream filtered to one tenant, never a service's durable consumer.
func (t Table) IntegrationsPermissions() jwt.Permissions {
	var p jwt.Permissions
	st := events.StreamTenant
	p.Pub.Allow.Add(
		apiConsumerCreate(st, "*")+"."+events.RootTenant+".*.>",
		apiConsumerInfo(st, "*"),
		apiConsumerDelete(st, "*"),
		"$JS.API.CONSUMER.LIST."+st,
		"$JS.API.CONSUMER.NAMES."+st,
		apiStreamInfo(st),
	)
	for _, names := range t.durables(st) {
		for _, c := range names {
			p.Pub.Deny.Add(apiConsumerCreate(st, c)+".>", apiConsumerDelete(st, c))
		}
	}
	p.Sub.Allow.Add(InboxPrefix(UserIntegrations) + ".>")
	sortPermissions(&p)
	return p
}

// SystemPermissions are UserSystem's in the system account: push an account JWT to the
// resolver and look one up.
func SystemPermissions() jwt.Permissions {
	var p jwt.Permissions
	p.Pub.Allow.Add(claimsUpdateSubject, "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE", "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP")
	p.Sub.Allow.Add(InboxPrefix(UserSystem) + ".>")
	return p
}

// integratorPermissions are an integrator's: fetch from, acknowledge and inspect its one
// consumer on the tenant stream, and receive on its own inbox. Nothing else: no publishing, no
// other consumer, no consumer creation, no core subscription to events.
func integratorPermissions(consumer string) jwt.Permissions {
	var p jwt.Permissions
	st := events.StreamTenant
	p.Pub.Allow.Add(apiConsumerInfo(st, consumer), apiConsumerNext(st, consumer))
	p.Pub.Allow.Add(acks(st, consumer)...)
	p.Sub.Allow.Add(InboxPrefix(consumer) + ".>")
	return p
}

func sortPermissions(p *jwt.Permissions) {
	slices.Sort(p.Pub.Allow)
	slices.Sort(p.Pub.Deny)
	slices.Sort(p.Sub.Allow)
}

// JetStream API subjects (https://docs.nats.io/reference/reference-protocols/nats_api_reference).
const claimsUpdateSubject = "$SYS.REQ.CLAIMS.UPDATE"

func apiStreamCreate(stream string) string { return "$JS.API.STREAM.CREATE." + stream }
func apiStreamUpdate(stream string) string { return "$JS.API.STREAM.UPDATE." + stream }
func apiStreamInfo(stream string) string   { return "$JS.API.STREAM.INFO." + stream }
func apiConsumerCreate(stream, consumer string) string {
	return "$JS.API.CONSUMER.CREATE." + stream + "." + consumer
}

func apiConsumerInfo(stream, consumer string) string {
	return "$JS.API.CONSUMER.INFO." + stream + "." + consumer
}

func apiConsumerNext(stream, consumer string) string {
	return "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer
}

func apiConsumerDelete(stream, consumer string) string {
	return "$JS.API.CONSUMER.DELETE." + stream + "." + consumer
}

// acks are the reply subjects a consumer's messages are acknowledged on, in the v1 format
// ($JS.ACK.<stream>.<consumer>...) and the v2 one ($JS.ACK.<domain>.<account hash>.<stream>...).
func acks(stream, consumer string) []string {
	return []string{"$JS.ACK." + stream + "." + consumer + ".>", "$JS.ACK.*.*." + stream + "." + consumer + ".>"}
}

// durableConsumer is what a handler does with its own durable pull consumer: create or update
// it (the new API names the filter subject in the request subject), look it up, pull, and ack.
func durableConsumer(stream, consumer string) []string {
	return append([]string{
		apiConsumerCreate(stream, consumer), apiConsumerCreate(stream, consumer) + ".>",
		apiConsumerInfo(stream, consumer), apiConsumerNext(stream, consumer),
	}, acks(stream, consumer)...)
}

// orderedConsumers is what a projection does: ordered consumers are ephemeral pull consumers
// with client-chosen random names, recreated (and the old one deleted) after a gap.
func orderedConsumers(stream string) []string {
	return []string{
		apiConsumerCreate(stream, "*"), apiConsumerCreate(stream, "*") + ".>",
		apiConsumerInfo(stream, "*"), apiConsumerNext(stream, "*"), apiConsumerDelete(stream, "*"),
	}
}

// streamReads reads a stream's state and single messages (a projection's catch-up target, a KV
// get).
func streamReads(stream string) []string {
	return []string{
		apiStreamInfo(stream), "$JS.API.STREAM.MSG.GET." + stream,
		"$JS.API.DIRECT.GET." + stream, "$JS.API.DIRECT.GET." + stream + ".>",
	}
}

// watchers is what a KV watch does: an ordered push consumer, whose flow-control requests are
// answered on $JS.FC.
func watchers(stream string) []string {
	return append(orderedConsumers(stream),
		"$JS.FC."+stream+".>", "$JS.FC.*.*."+stream+".>")
}

// BucketStream returns the stream of a KV bucket, "KV_<bucket>".
func BucketStream(bucket string) string { return "KV_" + bucket }
