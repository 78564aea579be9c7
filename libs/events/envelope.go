package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// CloudEvents constants.
const (
	SpecVersion     = "1.0"
	DataContentType = "application/json"
	// SourcePrefix starts every event source: "/patchwave/<service>".
	SourcePrefix = "/patchwave/"
)

// Header names used besides Nats-Msg-Id. They repeat envelope attributes so NATS tooling can read
// them without parsing the body.
const (
	HeaderCorrelationID = "Correlation-Id"
	HeaderTraceParent   = "Traceparent"
	HeaderDLQReason     = "Patchwave-Dlq-Reason"
	HeaderDLQSubject    = "Patchwave-Dlq-Subject"
	HeaderDLQSequence   = "Patchwave-Dlq-Sequence"
	HeaderDLQHandler    = "Patchwave-Dlq-Handler"
)

// ErrMalformed marks a message that is not a valid Patchwave event. Such a message can never be
// handled, so it goes to the dead-letter subject instead of being retried.
var ErrMalformed = errors.New("malformed event")

// Event is one event: the CloudEvents attributes and the decoded payload.
type Event struct {
	// ID is the CloudEvents id and the Nats-Msg-Id: "<subject>/<key>".
	ID string
	// Source is the CloudEvents source, "/patchwave/<producer>" (Def.Source); New sets it.
	Source string
	// Type is the payload's full protobuf name.
	Type string
	// Key is the business key (CloudEvents subject), e.g. "run-1/i-0abc".
	Key string
	// Time the event happened; the bus sets it on publish when zero.
	Time time.Time
	// Tenant is empty for catalog events.
	Tenant string
	// CorrelationID ties together every event caused by one request.
	CorrelationID string
	// TraceParent is a W3C trace context.
	TraceParent string
	// Subject is the NATS subject the event is published on.
	Subject string
	// Data is the payload.
	Data proto.Message

	// Sequence is the stream sequence of a received event (0 before publishing).
	Sequence uint64
	// Delivered counts deliveries of a received event to this consumer, from 1.
	Delivered uint64
}

// New builds an event for payload data with a deterministic id from its subject and key, and
// the source of its producer. key is the event's business key (for example "<run>/<instance>"):
// two events with the same kind, tenant and key are the same event. tenant must be empty for
// catalog events.
func New(tenant, key string, data proto.Message) (*Event, error) {
	d, err := DefOf(data)
	if err != nil {
		return nil, err
	}
	switch d.Scope {
	case ScopeTenant:
		if err := ValidateTenant(tenant); err != nil {
			return nil, err
		}
	case ScopeCatalog:
		if tenant != "" {
			return nil, fmt.Errorf("tenant %q: catalog event %s has no tenant", tenant, d.Message)
		}
	}
	if key == "" || strings.ContainsAny(key, " \t\r\n") {
		return nil, fmt.Errorf("key %q: must be non-empty and contain no white space", key)
	}
	subject := d.Subject(tenant)
	return &Event{
		ID:      subject + "/" + key,
		Source:  d.Source(),
		Type:    string(d.Message),
		Key:     key,
		Tenant:  tenant,
		Subject: subject,
		Data:    data,
	}, nil
}

// MustNew is New for payloads and keys known to be valid; it panics otherwise.
func MustNew(tenant, key string, data proto.Message) *Event {
	e, err := New(tenant, key, data)
	if err != nil {
		panic(err)
	}
	return e
}

// wire is the structured-mode CloudEvents JSON document.
type wire struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time,omitzero"`
	DataContentType string          `json:"datacontenttype"`
	Tenant          string          `json:"tenant,omitempty"`
	CorrelationID   string          `json:"correlationid,omitempty"`
	TraceParent     string          `json:"traceparent,omitempty"`
	Data            json.RawMessage `json:"data"`
}

var (
	dataMarshal   = protojson.MarshalOptions{}
	dataUnmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}
)

// Marshal encodes e as a CloudEvents 1.0 structured-mode JSON document.
func Marshal(e *Event) ([]byte, error) { return MarshalAppend(nil, e) }

// MarshalAppend appends e's document, as Marshal writes it, to dst and returns the extended
// slice. A publisher that keeps its buffers (the bus) writes each event without allocating
// one.
func MarshalAppend(dst []byte, e *Event) ([]byte, error) {
	if e == nil || e.Data == nil {
		return nil, errors.New("marshal event: no payload")
	}
	if e.ID == "" || e.Source == "" || e.Type == "" {
		return nil, fmt.Errorf("marshal event %q: id, source and type are required", e.ID)
	}
	// The payload and the document are written to pooled buffers; only the document
	// returned is allocated, at its size (none when dst has room).
	bufs := marshalBufs.Get().(*marshalBuf)
	defer bufs.put()
	data, compact := appendDataFast(bufs.data[:0], e.Data.ProtoReflect(), 0)
	if !compact {
		var err error
		if data, err = dataMarshal.MarshalAppend(bufs.data[:0], e.Data); err != nil {
			return nil, fmt.Errorf("marshal event %s data: %w", e.ID, err)
		}
	}
	bufs.data = data
	w := wire{
		SpecVersion: SpecVersion, ID: e.ID, Source: e.Source, Type: e.Type, Subject: e.Key,
		DataContentType: DataContentType, Tenant: e.Tenant,
		CorrelationID: e.CorrelationID, TraceParent: e.TraceParent, Data: data,
	}
	if !e.Time.IsZero() {
		w.Time = e.Time.UTC()
	}
	bufs.doc.Reset()
	if appendWireFast(&bufs.doc, &w, compact) {
		return append(dst, bufs.doc.Bytes()...), nil
	}
	doc, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	if dst == nil {
		return doc, nil
	}
	return append(dst, doc...), nil
}

// marshalBuf is Marshal's scratch space: the payload as protojson writes it, and the document.
type marshalBuf struct {
	data []byte
	doc  bytes.Buffer
}

// maxPooledBuf is the largest scratch buffer Marshal keeps for the next call.
const maxPooledBuf = 64 << 10

func (b *marshalBuf) put() {
	if cap(b.data) > maxPooledBuf || b.doc.Cap() > maxPooledBuf {
		return
	}
	marshalBufs.Put(b)
}

var marshalBufs = sync.Pool{New: func() any { return &marshalBuf{data: make([]byte, 0, 1024)} }}

// Unmarshal decodes a CloudEvents document published on subject. Every failure wraps
// ErrMalformed: an unknown type, a payload of the wrong shape, missing attributes, a source
// that is not the registered producer of the type (Def.Producer), or a tenant or type that does
// not match the subject.
func Unmarshal(subject string, b []byte) (*Event, error) {
	e := new(Event)
	if err := UnmarshalTo(e, subject, b); err != nil {
		return nil, err
	}
	return e, nil
}

// UnmarshalTo is Unmarshal into *e, which it overwrites (and leaves unchanged on an error): a
// consumer that decodes many events at once keeps them in one slice instead of allocating each.
func UnmarshalTo(e *Event, subject string, b []byte) error {
	var w wire
	if !decodeWireFast(b, &w) {
		// A variable of its own: w, which encoding/json would move to the heap, stays on the
		// stack on the fast path.
		slow := new(wire)
		if err := json.Unmarshal(b, slow); err != nil {
			return fmt.Errorf("%w: not CloudEvents JSON: %w", ErrMalformed, err)
		}
		w = *slow
	}
	switch {
	case w.SpecVersion != SpecVersion:
		return fmt.Errorf("%w: specversion %q, want %q", ErrMalformed, w.SpecVersion, SpecVersion)
	case w.ID == "" || w.Source == "" || w.Type == "":
		return fmt.Errorf("%w: id, source and type are required", ErrMalformed)
	case w.DataContentType != "" && w.DataContentType != DataContentType:
		return fmt.Errorf("%w: datacontenttype %q, want %q", ErrMalformed, w.DataContentType, DataContentType)
	case len(w.Data) == 0:
		return fmt.Errorf("%w: event %s has no data", ErrMalformed, w.ID)
	}
	d, ok := registry[protoreflect.FullName(w.Type)]
	if !ok {
		return fmt.Errorf("%w: unknown type %q", ErrMalformed, w.Type)
	}
	if w.Source != d.Source() {
		return fmt.Errorf("%w: source %q is not the producer of %s (want %q)", ErrMalformed, w.Source, w.Type, d.Source())
	}
	switch d.Scope {
	case ScopeTenant:
		if err := ValidateTenant(w.Tenant); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	case ScopeCatalog:
		if w.Tenant != "" {
			return fmt.Errorf("%w: catalog event %s has tenant %q", ErrMalformed, w.Type, w.Tenant)
		}
	}
	if subject == "" {
		subject = d.Subject(w.Tenant)
	} else if !d.HasSubject(w.Tenant, subject) {
		return fmt.Errorf("%w: type %s with tenant %q belongs on %q, received on %q", ErrMalformed, w.Type, w.Tenant, d.Subject(w.Tenant), subject)
	}
	msg := d.new()
	if !decodeDataFast(w.Data, msg) {
		// protojson skips an unknown field's value without checking all of its grammar (it
		// takes the number 10e): the payload must be JSON first, as the fast path checks.
		if !json.Valid(w.Data) {
			return fmt.Errorf("%w: data of %s: not valid JSON", ErrMalformed, w.Type)
		}
		msg = d.new()
		if err := dataUnmarshal.Unmarshal(w.Data, msg); err != nil {
			return fmt.Errorf("%w: data of %s: %w", ErrMalformed, w.Type, err)
		}
	}
	*e = Event{
		ID: w.ID, Source: w.Source, Type: w.Type, Key: w.Subject, Tenant: w.Tenant,
		CorrelationID: w.CorrelationID, TraceParent: w.TraceParent,
		Subject: subject, Data: msg,
	}
	e.Time = w.Time
	return nil
}
