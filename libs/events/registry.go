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

// Def binds one payload message to its subject.
type Def struct {
	Scope     Scope
	Aggregate string
	Event     string
	// Message is the full protobuf name of the payload; it is also the CloudEvents type.
	Message protoreflect.FullName
	new     func() proto.Message
}

// Subject returns the subject an event of this kind is published on.
func (d Def) Subject(tenant string) string {
	if d.Scope == ScopeCatalog {
		return CatalogSubject(d.Aggregate, d.Event)
	}
	return TenantSubject(tenant, d.Aggregate, d.Event)
}

// Pattern returns the subject filter matching this kind of event for every tenant.
func (d Def) Pattern() string { return d.Subject("*") }

// PatternFor returns the subject filter matching this kind of event for one tenant.
func (d Def) PatternFor(tenant string) string { return d.Subject(tenant) }

func def[T proto.Message](scope Scope, aggregate, event string, newT func() T) Def {
	return Def{
		Scope: scope, Aggregate: aggregate, Event: event,
		Message: newT().ProtoReflect().Descriptor().FullName(),
		new:     func() proto.Message { return newT() },
	}
}

// registry is the fixed table of every event Patchwave publishes. It is read-only.
var registry = func() map[protoreflect.FullName]Def {
	defs := []Def{
		def(ScopeTenant, "run", "started", func() *eventsv1.RunStarted { return &eventsv1.RunStarted{} }),
		def(ScopeTenant, "run", "completed", func() *eventsv1.RunCompleted { return &eventsv1.RunCompleted{} }),
		def(ScopeTenant, "job", "requested", func() *eventsv1.JobRequested { return &eventsv1.JobRequested{} }),
		def(ScopeTenant, "snapshot", "created", func() *eventsv1.SnapshotCreated { return &eventsv1.SnapshotCreated{} }),
		def(ScopeTenant, "snapshot", "failed", func() *eventsv1.SnapshotFailed { return &eventsv1.SnapshotFailed{} }),
		def(ScopeTenant, "install", "started", func() *eventsv1.InstallStarted { return &eventsv1.InstallStarted{} }),
		def(ScopeTenant, "install", "succeeded", func() *eventsv1.InstallSucceeded { return &eventsv1.InstallSucceeded{} }),
		def(ScopeTenant, "install", "failed", func() *eventsv1.InstallFailed { return &eventsv1.InstallFailed{} }),
		def(ScopeTenant, "notification", "sent", func() *eventsv1.NotificationSent { return &eventsv1.NotificationSent{} }),
		def(ScopeTenant, "notification", "failed", func() *eventsv1.NotificationFailed { return &eventsv1.NotificationFailed{} }),
		def(ScopeTenant, "baseline", "approved", func() *eventsv1.BaselineApproved { return &eventsv1.BaselineApproved{} }),
		def(ScopeCatalog, "baseline", "published", func() *eventsv1.BaselinePublished { return &eventsv1.BaselinePublished{} }),
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
