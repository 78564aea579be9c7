package domain

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Certification states, short names.
const (
	StateNew       = typesv1.CertificationState_CERTIFICATION_STATE_NEW
	StateInTest    = typesv1.CertificationState_CERTIFICATION_STATE_IN_TEST
	StateCertified = typesv1.CertificationState_CERTIFICATION_STATE_CERTIFIED
	StateRejected  = typesv1.CertificationState_CERTIFICATION_STATE_REJECTED
	StateRevoked   = typesv1.CertificationState_CERTIFICATION_STATE_REVOKED
)

// Limits of a certification step.
const (
	MaxNotes           = 4096
	MaxEvidence        = 20
	MaxEvidenceContent = 64 << 10
)

// transitions lists the states each state may move to. NEW may go straight to CERTIFIED only
// by an auto-approval rule (see Certify).
var transitions = map[typesv1.CertificationState][]typesv1.CertificationState{
	StateNew:       {StateInTest},
	StateInTest:    {StateCertified, StateRejected},
	StateCertified: {StateRevoked},
}

// StateName is the short name of a certification state ("IN_TEST").
func StateName(s typesv1.CertificationState) string {
	return strings.TrimPrefix(s.String(), "CERTIFICATION_STATE_")
}

// ParseState reads a short or full state name ("certified", "CERTIFICATION_STATE_CERTIFIED").
func ParseState(s string) (typesv1.CertificationState, bool) {
	name := "CERTIFICATION_STATE_" + strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "CERTIFICATION_STATE_")
	v, ok := typesv1.CertificationState_value[name]
	if !ok || v == 0 {
		return 0, false
	}
	return typesv1.CertificationState(v), true
}

// StepRequest is a certification step someone asks for.
type StepRequest struct {
	To       typesv1.CertificationState
	Actor    string
	Notes    string
	Evidence []*typesv1.Evidence
	// RuleID names the auto-approval rule making the step; empty for a person.
	RuleID string
}

// Validate checks the request's fields, naming each.
func (s StepRequest) Validate() error {
	var v apierr.Violations
	switch s.To {
	case StateInTest, StateCertified, StateRejected, StateRevoked:
	default:
		v.Add("state", fmt.Sprintf("must be IN_TEST, CERTIFIED, REJECTED or REVOKED, got %s", StateName(s.To)))
	}
	if err := ValidateActor(s.Actor); err != nil {
		v.Add("actor", err.Error())
	}
	if len(s.Notes) > MaxNotes {
		v.Add("notes", fmt.Sprintf("at most %d bytes, got %d", MaxNotes, len(s.Notes)))
	}
	if len(s.Evidence) > MaxEvidence {
		v.Add("evidence", fmt.Sprintf("at most %d items, got %d", MaxEvidence, len(s.Evidence)))
	}
	for i, e := range s.Evidence {
		field := fmt.Sprintf("evidence[%d]", i)
		if e.GetUrl() == "" && e.GetContent() == "" {
			v.Add(field, "a url or an attached result (content) is required")
		}
		if e.GetUrl() != "" {
			if u, err := url.Parse(e.GetUrl()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.Add(field+".url", fmt.Sprintf("%q: must be an absolute http(s) URL", e.GetUrl()))
			}
		}
		if len(e.GetContent()) > MaxEvidenceContent {
			v.Add(field+".content", fmt.Sprintf("at most %d bytes, got %d", MaxEvidenceContent, len(e.GetContent())))
		}
	}
	if s.RuleID == "" && (s.To == StateCertified || s.To == StateRejected) && len(s.Evidence) == 0 {
		v.Add("evidence", fmt.Sprintf("a %s step needs evidence: a link or an attached test result", StateName(s.To)))
	}
	return v.Err()
}

// Certify applies a certification step to the record at time at, or refuses an illegal
// transition with an ErrConflict error naming the current state and the allowed ones.
func (r *Record) Certify(req StepRequest, at time.Time) (*typesv1.CertificationStep, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	from := r.State
	allowed := transitions[from]
	if req.RuleID != "" && from == StateNew {
		allowed = append([]typesv1.CertificationState{StateCertified}, allowed...)
	}
	ok := false
	for _, s := range allowed {
		ok = ok || s == req.To
	}
	if !ok {
		names := make([]string, len(allowed))
		for i, s := range allowed {
			names[i] = StateName(s)
		}
		next := "none: it is final"
		if len(names) > 0 {
			next = strings.Join(names, ", ")
		}
		return nil, Conflict(fmt.Errorf("patch %q is %s: cannot move to %s (allowed: %s)",
			r.Patch.GetId(), StateName(from), StateName(req.To), next))
	}
	step := &typesv1.CertificationStep{
		From: from, To: req.To, Actor: req.Actor, At: timestamppb.New(at.UTC()),
		Notes: req.Notes, Evidence: req.Evidence, RuleId: req.RuleID,
	}
	r.State = req.To
	r.History = append(r.History, step)
	return step, nil
}

// MaxActor bounds an actor name.
const MaxActor = 128

// ValidateActor checks an actor name (the subject of the caller's credential): required,
// 1-128 printable characters.
func ValidateActor(actor string) error {
	if strings.TrimSpace(actor) == "" {
		return errors.New("required: every write is made by an authenticated caller")
	}
	if len(actor) > MaxActor || strings.ContainsFunc(actor, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%q: at most %d printable characters", actor, MaxActor)
	}
	return nil
}
