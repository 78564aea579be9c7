package events

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// Scope says whether an event belongs to one tenant or to the global catalog.
type Scope int

// Scopes.
const (
	ScopeTenant Scope = iota + 1
	ScopeCatalog
)

// Def binds one payload message to its subject and to the one service that publishes it.
type Def struct {
	Scope     Scope
	Aggregate string
	Event     string
	// Producer is the service that publishes this event, and the only one allowed to: its
	// NATS user may publish the subject (libs/natsauth derives the permissions from it), the bus
	// refuses to publish it from another service, and a received event whose CloudEvents source
	// is not SourcePrefix+Producer is malformed.
	Producer string
	// Message is the full protobuf name of the payload; it is also the CloudEvents type.
	Message protoreflect.FullName
	new     func() proto.Message
	// source is SourcePrefix+Producer, built once: every event published and received
	// compares its source with it.
	source string
}

// Subject returns the subject an event of this kind is published on.
func (d Def) Subject(tenant string) string {
	if d.Scope == ScopeCatalog {
		return CatalogSubject(d.Aggregate, d.Event)
	}
	return TenantSubject(tenant, d.Aggregate, d.Event)
}

// HasSubject reports whether subject is d.Subject(tenant), without building that string (a
// check every publish and every received event makes).
func (d Def) HasSubject(tenant, subject string) bool {
	if d.Scope == ScopeCatalog {
		return isDotJoin(subject, RootCatalog, d.Aggregate, d.Event)
	}
	return isDotJoin(subject, RootTenant, tenant, d.Aggregate, d.Event)
}

// isDotJoin reports whether s is parts joined by dots.
func isDotJoin(s string, parts ...string) bool {
	for i, p := range parts {
		if i > 0 {
			if s == "" || s[0] != '.' {
				return false
			}
			s = s[1:]
		}
		if !strings.HasPrefix(s, p) {
			return false
		}
		s = s[len(p):]
	}
	return s == ""
}

// Pattern returns the subject filter matching this kind of event for every tenant.
func (d Def) Pattern() string { return d.Subject("*") }

// PatternFor returns the subject filter matching this kind of event for one tenant.
func (d Def) PatternFor(tenant string) string { return d.Subject(tenant) }

// Source returns the CloudEvents source of this kind of event: SourcePrefix + Producer.
func (d Def) Source() string {
	if d.source != "" {
		return d.source
	}
	return SourcePrefix + d.Producer
}

func def[T proto.Message](producer string, scope Scope, aggregate, event string, newT func() T) Def {
	return Def{
		Scope: scope, Aggregate: aggregate, Event: event, Producer: producer,
		Message: newT().ProtoReflect().Descriptor().FullName(),
		new:     func() proto.Message { return newT() },
		source:  SourcePrefix + producer,
	}
}

// registry is the fixed table of every event Patchwave publishes, each with its producing
// service. It is read-only.
var registry = func() map[protoreflect.FullName]Def {
	defs := []Def{
		def("scheduler", ScopeTenant, "run", "started", func() *eventsv1.RunStarted { return &eventsv1.RunStarted{} }),
		def("scheduler", ScopeTenant, "run", "completed", func() *eventsv1.RunCompleted { return &eventsv1.RunCompleted{} }),
		def("scheduler", ScopeTenant, "job", "requested", func() *eventsv1.JobRequested { return &eventsv1.JobRequested{} }),
		def("snapshotter", ScopeTenant, "snapshot", "created", func() *eventsv1.SnapshotCreated { return &eventsv1.SnapshotCreated{} }),
		def("snapshotter", ScopeTenant, "snapshot", "failed", func() *eventsv1.SnapshotFailed { return &eventsv1.SnapshotFailed{} }),
		def("installer", ScopeTenant, "install", "started", func() *eventsv1.InstallStarted { return &eventsv1.InstallStarted{} }),
		def("installer", ScopeTenant, "install", "succeeded", func() *eventsv1.InstallSucceeded { return &eventsv1.InstallSucceeded{} }),
		def("installer", ScopeTenant, "install", "failed", func() *eventsv1.InstallFailed { return &eventsv1.InstallFailed{} }),
		def("notifier", ScopeTenant, "notification", "sent", func() *eventsv1.NotificationSent { return &eventsv1.NotificationSent{} }),
		def("notifier", ScopeTenant, "notification", "failed", func() *eventsv1.NotificationFailed { return &eventsv1.NotificationFailed{} }),
		def("notifier", ScopeTenant, "subscription", "changed", func() *eventsv1.SubscriptionChanged { return &eventsv1.SubscriptionChanged{} }),
		def("catalog", ScopeTenant, "baseline", "approved", func() *eventsv1.BaselineApproved { return &eventsv1.BaselineApproved{} }),
		def("catalog", ScopeCatalog, "baseline", "published", func() *eventsv1.BaselinePublished { return &eventsv1.BaselinePublished{} }),
		def("snapshotter", ScopeTenant, "snapshot", "started", func() *eventsv1.SnapshotStarted { return &eventsv1.SnapshotStarted{} }),
		def("snapshotter", ScopeTenant, "snapshot", "deleted", func() *eventsv1.SnapshotDeleted { return &eventsv1.SnapshotDeleted{} }),
		def("snapshotter", ScopeTenant, "restore", "requested", func() *eventsv1.RestoreRequested { return &eventsv1.RestoreRequested{} }),
		def("snapshotter", ScopeTenant, "restore", "started", func() *eventsv1.RestoreStarted { return &eventsv1.RestoreStarted{} }),
		def("snapshotter", ScopeTenant, "restore", "completed", func() *eventsv1.RestoreCompleted { return &eventsv1.RestoreCompleted{} }),
		def("snapshotter", ScopeTenant, "restore", "failed", func() *eventsv1.RestoreFailed { return &eventsv1.RestoreFailed{} }),
		def("catalog", ScopeTenant, "baseline", "rejected", func() *eventsv1.BaselineRejected { return &eventsv1.BaselineRejected{} }),
		def("catalog", ScopeTenant, "approval_policy", "changed", func() *eventsv1.ApprovalPolicyChanged { return &eventsv1.ApprovalPolicyChanged{} }),
		def("catalog", ScopeCatalog, "patch", "discovered", func() *eventsv1.PatchDiscovered { return &eventsv1.PatchDiscovered{} }),
		def("catalog", ScopeCatalog, "patch", "updated", func() *eventsv1.PatchUpdated { return &eventsv1.PatchUpdated{} }),
		def("catalog", ScopeCatalog, "patch", "test_started", func() *eventsv1.PatchTestStarted { return &eventsv1.PatchTestStarted{} }),
		def("catalog", ScopeCatalog, "patch", "certified", func() *eventsv1.PatchCertified { return &eventsv1.PatchCertified{} }),
		def("catalog", ScopeCatalog, "patch", "rejected", func() *eventsv1.PatchRejected { return &eventsv1.PatchRejected{} }),
		def("catalog", ScopeCatalog, "patch", "revoked", func() *eventsv1.PatchRevoked { return &eventsv1.PatchRevoked{} }),
		def("catalog", ScopeCatalog, "rule", "changed", func() *eventsv1.AutoApprovalRuleChanged { return &eventsv1.AutoApprovalRuleChanged{} }),
		def("catalog", ScopeCatalog, "source", "polled", func() *eventsv1.SourcePolled { return &eventsv1.SourcePolled{} }),
		def("catalog", ScopeCatalog, "source", "failed", func() *eventsv1.SourceFailed { return &eventsv1.SourceFailed{} }),
		def("scheduler", ScopeTenant, "design", "changed", func() *eventsv1.DesignChanged { return &eventsv1.DesignChanged{} }),
		def("scheduler", ScopeTenant, "service_request", "raised", func() *eventsv1.ServiceRequestRaised { return &eventsv1.ServiceRequestRaised{} }),
		def("scheduler", ScopeTenant, "service_request", "applied", func() *eventsv1.ServiceRequestApplied { return &eventsv1.ServiceRequestApplied{} }),
		def("scheduler", ScopeTenant, "service_request", "rejected", func() *eventsv1.ServiceRequestRejected { return &eventsv1.ServiceRequestRejected{} }),
		def("scheduler", ScopeTenant, "service_request", "withdrawn", func() *eventsv1.ServiceRequestWithdrawn { return &eventsv1.ServiceRequestWithdrawn{} }),
		def("reporting", ScopeTenant, "scan", "ordered", func() *eventsv1.ScanOrdered { return &eventsv1.ScanOrdered{} }),
		def("reporting", ScopeTenant, "scan", "requested", func() *eventsv1.ScanRequested { return &eventsv1.ScanRequested{} }),
		def("installer", ScopeTenant, "scan", "started", func() *eventsv1.ScanStarted { return &eventsv1.ScanStarted{} }),
		def("installer", ScopeTenant, "scan", "completed", func() *eventsv1.ScanCompleted { return &eventsv1.ScanCompleted{} }),
		def("installer", ScopeTenant, "scan", "failed", func() *eventsv1.ScanFailed { return &eventsv1.ScanFailed{} }),
		def("gateway", ScopeTenant, "audit", "recorded", func() *eventsv1.AuditRecorded { return &eventsv1.AuditRecorded{} }),
		// The run controller (services/scheduler): membership chunks and control events.
		def("scheduler", ScopeTenant, "run", "membership", func() *eventsv1.RunMembership { return &eventsv1.RunMembership{} }),
		def("scheduler", ScopeTenant, "run", "paused", func() *eventsv1.RunPaused { return &eventsv1.RunPaused{} }),
		def("scheduler", ScopeTenant, "run", "resumed", func() *eventsv1.RunResumed { return &eventsv1.RunResumed{} }),
		def("scheduler", ScopeTenant, "run", "cancelled", func() *eventsv1.RunCancelled { return &eventsv1.RunCancelled{} }),
		def("scheduler", ScopeTenant, "run", "halted", func() *eventsv1.RunHalted { return &eventsv1.RunHalted{} }),
		def("scheduler", ScopeTenant, "run", "dispatch_stopped", func() *eventsv1.RunDispatchStopped { return &eventsv1.RunDispatchStopped{} }),
		// Firing: what became of each occurrence of a wave (services/scheduler).
		def("scheduler", ScopeTenant, "cycle", "pinned", func() *eventsv1.CyclePinned { return &eventsv1.CyclePinned{} }),
		def("scheduler", ScopeTenant, "run", "deferred", func() *eventsv1.RunDeferred { return &eventsv1.RunDeferred{} }),
		def("scheduler", ScopeTenant, "run", "skipped", func() *eventsv1.RunSkipped { return &eventsv1.RunSkipped{} }),
		def("scheduler", ScopeTenant, "run", "missed", func() *eventsv1.RunMissed { return &eventsv1.RunMissed{} }),
		def("scheduler", ScopeTenant, "run", "waiting_approval", func() *eventsv1.RunWaitingApproval { return &eventsv1.RunWaitingApproval{} }),
		def("scheduler", ScopeTenant, "run", "held", func() *eventsv1.RunHeld { return &eventsv1.RunHeld{} }),
		def("scheduler", ScopeTenant, "run", "released", func() *eventsv1.RunReleased { return &eventsv1.RunReleased{} }),
	}
	m := make(map[protoreflect.FullName]Def, len(defs))
	for _, d := range defs {
		m[d.Message] = d
	}
	return m
}()

// Defs returns every event definition, sorted by message name.
func Defs() []Def {
	out := make([]Def, 0, len(registry))
	for _, d := range registry {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Def) int { return strings.Compare(string(a.Message), string(b.Message)) })
	return out
}

// DefOf returns the definition of msg's kind.
func DefOf(msg proto.Message) (Def, error) {
	if msg == nil {
		return Def{}, fmt.Errorf("payload: must not be nil")
	}
	name := msg.ProtoReflect().Descriptor().FullName()
	d, ok := registry[name]
	if !ok {
		return Def{}, fmt.Errorf("payload %s: not a registered event type", name)
	}
	return d, nil
}

// DefFor returns the definition of the event kind T.
func DefFor[T proto.Message]() Def {
	var zero T
	d, err := DefOf(zero.ProtoReflect().Type().New().Interface())
	if err != nil {
		panic(err) // a programming error: T is not an event payload
	}
	return d
}

// Pattern returns the subject filter matching events of kind T for every tenant.
func Pattern[T proto.Message]() string { return DefFor[T]().Pattern() }
