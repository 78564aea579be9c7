package adapters

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// An instance is stored as a packed binary record (a rebuild writes every instance, and every
// batch reads and writes the instances it touches, so the record's encoding is on the hot
// path):
//
//	byte      recordV1
//	varint    Wave
//	string    OSFamily, RunBaseline, Account, Region, LastRun
//	uvarint   Outcome
//	varint    AssessedAt (Unix ns, 0: zero time)
//	string    Reason
//	uvarint   Seq
//	uvarint   State
//	string    Baseline
//	uvarint   len(Missing), then each patch id as a string
//	uvarint   len(Patches), then per patch, by id: string id, uvarint state, string error,
//	          string run, varint since (Unix ns)
//
// where a string is its uvarint length and its bytes. A record that starts with '{' is the
// JSON record of earlier versions (recordJSON), still read so a store written by them needs
// no rebuild; it is rewritten packed the next time the instance changes.
const recordV1 byte = 1

// recordJSON is the JSON record of earlier versions: domain.Instance with times as Unix
// nanoseconds.
type recordJSON struct {
	W  int32                      `json:"w"`
	F  string                     `json:"f,omitempty"`
	RB string                     `json:"rb,omitempty"`
	AC string                     `json:"ac,omitempty"`
	RG string                     `json:"rg,omitempty"`
	R  string                     `json:"r,omitempty"`
	O  domain.Outcome             `json:"o,omitempty"`
	A  int64                      `json:"a,omitempty"`
	X  string                     `json:"x,omitempty"`
	P  map[string]patchRecordJSON `json:"p,omitempty"`
	Q  uint64                     `json:"q"`
	C  typesv1.ComplianceState    `json:"c"`
	B  string                     `json:"b,omitempty"`
	M  []string                   `json:"m,omitempty"`
}

type patchRecordJSON struct {
	S typesv1.PatchState `json:"s"`
	E string             `json:"e,omitempty"`
	R string             `json:"r,omitempty"`
	T int64              `json:"t,omitempty"`
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeInstance returns the packed record of in.
func encodeInstance(in domain.Instance) ([]byte, error) {
	return appendInstance(nil, in), nil
}

// appendInstance appends the packed record of in to b.
func appendInstance(b []byte, in domain.Instance) []byte {
	b = append(b, recordV1)
	b = binary.AppendVarint(b, int64(in.Wave))
	b = appendString(b, in.OSFamily)
	b = appendString(b, in.RunBaseline)
	b = appendString(b, in.Account)
	b = appendString(b, in.Region)
	b = appendString(b, in.LastRun)
	b = binary.AppendUvarint(b, uint64(in.Outcome))
	b = binary.AppendVarint(b, nanos(in.AssessedAt))
	b = appendString(b, in.Reason)
	b = binary.AppendUvarint(b, in.Seq)
	b = binary.AppendUvarint(b, uint64(in.State))
	b = appendString(b, in.Baseline)
	b = binary.AppendUvarint(b, uint64(len(in.Missing)))
	for _, m := range in.Missing {
		b = appendString(b, m)
	}
	b = binary.AppendUvarint(b, uint64(len(in.Patches)))
	var few [8]string // most instances have a few patches: no allocation for their ids
	ids := few[:0]
	for id := range in.Patches {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p := in.Patches[id]
		b = appendString(b, id)
		b = binary.AppendUvarint(b, uint64(p.State))
		b = appendString(b, p.Error)
		b = appendString(b, p.RunID)
		b = binary.AppendVarint(b, nanos(p.Since))
	}
	return b
}

var errShortRecord = errors.New("truncated instance record")

// reader reads a packed record; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShortRecord
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShortRecord
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errShortRecord
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// count reads a length that must fit in what is left (each element takes a byte at least).
func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = errShortRecord
		return 0
	}
	return int(n)
}

// decodeInstance decodes a record (packed, or the JSON of earlier versions) into in, keeping
// its Tenant and ID.
func decodeInstance(b []byte, in *domain.Instance) error {
	if len(b) == 0 {
		return errShortRecord
	}
	switch b[0] {
	case '{':
		return decodeInstanceJSON(b, in)
	case recordV1:
	default:
		return fmt.Errorf("instance record version %d is not known", b[0])
	}
	r := reader{b: b[1:]}
	out := domain.Instance{Tenant: in.Tenant, ID: in.ID}
	out.Wave = int32(r.varint())
	out.OSFamily = r.string()
	out.RunBaseline = r.string()
	out.Account = r.string()
	out.Region = r.string()
	out.LastRun = r.string()
	out.Outcome = domain.Outcome(r.uvarint())
	out.AssessedAt = fromNanos(r.varint())
	out.Reason = r.string()
	out.Seq = r.uvarint()
	out.State = typesv1.ComplianceState(r.uvarint())
	out.Baseline = r.string()
	if n := r.count(); n > 0 {
		out.Missing = make([]string, n)
		for i := range out.Missing {
			out.Missing[i] = r.string()
		}
	}
	if n := r.count(); n > 0 {
		out.Patches = make(map[string]domain.PatchStatus, n)
		for range n {
			id := r.string()
			out.Patches[id] = domain.PatchStatus{State: typesv1.PatchState(r.uvarint()), Error: r.string(), RunID: r.string(),
				Since: fromNanos(r.varint())}
		}
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("instance record: %d bytes after its end", len(r.b))
	}
	*in = out
	return nil
}

func decodeInstanceJSON(b []byte, in *domain.Instance) error {
	var r recordJSON
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	*in = domain.Instance{Tenant: in.Tenant, ID: in.ID, Wave: r.W, OSFamily: r.F, RunBaseline: r.RB, Account: r.AC, Region: r.RG,
		LastRun: r.R, Outcome: r.O, AssessedAt: fromNanos(r.A), Reason: r.X, Seq: r.Q, State: r.C, Baseline: r.B, Missing: r.M}
	if len(r.P) > 0 {
		in.Patches = make(map[string]domain.PatchStatus, len(r.P))
		for id, p := range r.P {
			in.Patches[id] = domain.PatchStatus{State: p.S, Error: p.E, RunID: p.R, Since: fromNanos(p.T)}
		}
	}
	return nil
}
