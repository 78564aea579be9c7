package design

import (
	"fmt"
	"io"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/apierr"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

// Service request states, short names.
const (
	StateOpen      = typesv1.ServiceRequestState_SERVICE_REQUEST_STATE_OPEN
	StateApplied   = typesv1.ServiceRequestState_SERVICE_REQUEST_STATE_APPLIED
	StateRejected  = typesv1.ServiceRequestState_SERVICE_REQUEST_STATE_REJECTED
	StateWithdrawn = typesv1.ServiceRequestState_SERVICE_REQUEST_STATE_WITHDRAWN
)

// Action closes a service request.
type Action int

// Actions. Each leads from OPEN to one final state.
const (
	ActionApply Action = iota + 1
	ActionReject
	ActionWithdraw
)

// String is the action's verb.
func (a Action) String() string {
	switch a {
	case ActionApply:
		return "applied"
	case ActionReject:
		return "rejected"
	case ActionWithdraw:
		return "withdrawn"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// State is the final state the action leads to.
func (a Action) State() typesv1.ServiceRequestState {
	switch a {
	case ActionApply:
		return StateApplied
	case ActionReject:
		return StateRejected
	case ActionWithdraw:
		return StateWithdrawn
	}
	return typesv1.ServiceRequestState_SERVICE_REQUEST_STATE_UNSPECIFIED
}

// StateName is a state's short name: "OPEN", "APPLIED", ...
func StateName(s typesv1.ServiceRequestState) string {
	const prefix = "SERVICE_REQUEST_STATE_"
	n := s.String()
	if len(n) > len(prefix) && n[:len(prefix)] == prefix {
		return n[len(prefix):]
	}
	return n
}

// NewRequestID returns a service request id that sorts by the time it was raised:
// "sr-20270112T090000Z-a1b2c3".
func NewRequestID(now time.Time, random io.Reader) (string, error) {
	return domain.NewSortableID("sr", now, random)
}

// Raise is the command that raises a service request.
type Raise struct {
	Tenant     string
	ID         string
	Actor      string
	Reason     string
	Operations []*typesv1.Operation
	Now        time.Time
	// Revision is the design revision the request is raised against.
	Revision uint64
}

// NewRequest checks the command's own fields (a reason, 1 to 50 operations) and returns the
// OPEN request. Whether the operations apply to the tenant's design is ApplyTenant's to say.
func NewRequest(c Raise) (*typesv1.ServiceRequest, error) {
	var v apierr.Violations
	checkText(&v, "reason", c.Reason, 1000, true)
	switch n := len(c.Operations); {
	case n == 0:
		v.Add("operations", "must list at least one operation: the change requested")
	case n > MaxOperations:
		v.Add("operations", fmt.Sprintf("must list at most %d operations, got %d", MaxOperations, n))
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	ops := make([]*typesv1.Operation, len(c.Operations))
	for i, op := range c.Operations {
		ops[i] = proto.Clone(op).(*typesv1.Operation)
	}
	return &typesv1.ServiceRequest{
		Tenant: c.Tenant, RequestId: c.ID, State: StateOpen, Reason: c.Reason, Operations: ops,
		RaisedBy: c.Actor, RaiseTime: timestamp(c.Now), RaisedRevision: c.Revision,
	}, nil
}

// CheckClose says whether actor may close r by action a: done is true when r is already in
// the action's final state (a repeat, which changes nothing: applying twice applies once). Any
// other move out of a final state is apierr.ErrFailedPrecondition naming the state; a reject
// needs a reason; only the actor who raised a request may withdraw it.
func CheckClose(r *typesv1.ServiceRequest, a Action, actor, reason string) (done bool, err error) {
	state := r.GetState()
	if state == a.State() {
		return true, nil
	}
	if state != StateOpen {
		return false, fmt.Errorf("%w: service request %s is %s, so it can no longer be %s (only an OPEN request can)",
			apierr.ErrFailedPrecondition, r.GetRequestId(), StateName(state), a)
	}
	var v apierr.Violations
	checkText(&v, "reason", reason, 1000, a == ActionReject)
	if err := v.Err(); err != nil {
		return false, err
	}
	if a == ActionWithdraw && actor != r.GetRaisedBy() {
		return false, fmt.Errorf("%w: service request %s was raised by %q: only they may withdraw it (an operator rejects it instead)",
			apierr.ErrFailedPrecondition, r.GetRequestId(), r.GetRaisedBy())
	}
	return false, nil
}

// Close returns a copy of r closed by action a.
func Close(r *typesv1.ServiceRequest, a Action, actor, reason string, now time.Time, appliedRevision uint64) *typesv1.ServiceRequest {
	c := proto.Clone(r).(*typesv1.ServiceRequest)
	c.State, c.ClosedBy, c.CloseTime, c.CloseReason = a.State(), actor, timestamp(now), reason
	if a == ActionApply {
		c.AppliedRevision = appliedRevision
	}
	return c
}

// FillFreezeIDs gives every addFreeze operation without an id one from newID, so the id a
// request will create is known (and shown) when it is raised. The operations are modified.
func FillFreezeIDs(ops []*typesv1.Operation, newID func() string) {
	for _, op := range ops {
		if f := op.GetAddFreeze(); f != nil && f.GetId() == "" {
			f.Id = newID()
		}
	}
}

// FreezeOnly reports whether every operation is one the provider-wide document takes.
func FreezeOnly(ops []*typesv1.Operation) bool {
	return !slices.ContainsFunc(ops, func(op *typesv1.Operation) bool {
		switch OpKind(op) {
		case "addFreeze", "putFreeze", "deleteFreeze", "importIcs":
			return false
		}
		return true
	})
}

// AppliedRevision is the design revision that applied r, whose own revision is rev. An applied
// request's record is written in the same atomic batch as the document it changes, right after
// it, and a closed request is never written again: so that revision is rev - 1 (the record
// cannot know it before the batch is stored).
func AppliedRevision(r *typesv1.ServiceRequest, rev uint64) uint64 {
	if r.GetState() != StateApplied {
		return 0
	}
	if r.GetAppliedRevision() != 0 {
		return r.GetAppliedRevision()
	}
	return rev - 1
}
