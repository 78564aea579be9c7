package design

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Change is the context of one write: whose document, when, by whom, and how the fields of its
// operations are named in errors.
type Change struct {
	// Tenant is the document's tenant.
	Tenant string
	// Now stamps created resources.
	Now time.Time
	// Actor is recorded on overrides.
	Actor string
	// Field returns the prefix of operation i's field names; nil means "" (the operation is a
	// direct write, whose fields are named relative to the request body). RequestField names
	// them inside a service request.
	Field func(i int, kind string) string
}

func (c Change) prefix(i int, kind string) string {
	if c.Field == nil {
		return ""
	}
	return c.Field(i, kind)
}

// RequestField names the fields of a service request's operations:
// "operations[2].putWave.schedule.weekOfMonth".
func RequestField(i int, kind string) string {
	if kind == "" {
		return fmt.Sprintf("operations[%d].", i)
	}
	return fmt.Sprintf("operations[%d].%s.", i, kind)
}

// OpKind is the JSON name of an operation's kind ("putWave"), or "" when none is set.
func OpKind(op *typesv1.Operation) string {
	switch op.GetKind().(type) {
	case *typesv1.Operation_PutTenant:
		return "putTenant"
	case *typesv1.Operation_PutAccount:
		return "putAccount"
	case *typesv1.Operation_DeleteAccount:
		return "deleteAccount"
	case *typesv1.Operation_PutWave:
		return "putWave"
	case *typesv1.Operation_DeleteWave:
		return "deleteWave"
	case *typesv1.Operation_AddFreeze:
		return "addFreeze"
	case *typesv1.Operation_PutFreeze:
		return "putFreeze"
	case *typesv1.Operation_DeleteFreeze:
		return "deleteFreeze"
	case *typesv1.Operation_ImportIcs:
		return "importIcs"
	case *typesv1.Operation_PutOverride:
		return "putOverride"
	case *typesv1.Operation_DeleteOverride:
		return "deleteOverride"
	case *typesv1.Operation_SetDefaultPolicy:
		return "setDefaultPolicy"
	case *typesv1.Operation_SetWavePolicy:
		return "setWavePolicy"
	}
	return ""
}

const opKinds = "putTenant, putAccount, deleteAccount, putWave, deleteWave, addFreeze, putFreeze, deleteFreeze, importIcs, putOverride, deleteOverride, setDefaultPolicy or setWavePolicy"

// Exists reports whether doc is a tenant that exists (not absent, not a tombstone).
func Exists(doc *typesv1.TenantDesign) bool {
	return doc != nil && !doc.GetDeleted() && doc.GetTenant() != nil
}

// ApplyTenant applies ops, in order, to a copy of doc and returns the new document, sorted;
// doc is not modified. Either every operation applies or the first that does not is the error:
// a *apierr.ValidationError naming the fields (prefixed by c.Field) and rules, or
// apierr.ErrNotFound for a resource to delete that does not exist. doc may be nil or a
// tombstone: then the first operation must be putTenant, which creates the tenant. The new
// document's LastChange is nil; the caller records it.
func ApplyTenant(doc *typesv1.TenantDesign, ops []*typesv1.Operation, c Change) (*typesv1.TenantDesign, error) {
	next := &typesv1.TenantDesign{}
	if Exists(doc) {
		next = proto.Clone(doc).(*typesv1.TenantDesign)
	}
	next.LastChange, next.Deleted = nil, false
	for i, op := range ops {
		kind := OpKind(op)
		f := c.prefix(i, kind)
		if next.Tenant == nil && kind != "putTenant" {
			return nil, &MissingError{What: "tenant " + c.Tenant}
		}
		var v apierr.Violations
		if err := applyOne(&v, next, op, kind, f, c); err != nil {
			return nil, err
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
	}
	sortTenant(next)
	return next, nil
}

// ApplyGlobal applies freeze operations (addFreeze, putFreeze, deleteFreeze, importIcs) to a
// copy of the provider-wide document, as ApplyTenant does; doc may be nil.
func ApplyGlobal(doc *typesv1.GlobalDesign, ops []*typesv1.Operation, c Change) (*typesv1.GlobalDesign, error) {
	next := &typesv1.GlobalDesign{}
	if doc != nil {
		next = proto.Clone(doc).(*typesv1.GlobalDesign)
	}
	next.LastChange = nil
	for i, op := range ops {
		kind := OpKind(op)
		f := c.prefix(i, kind)
		var v apierr.Violations
		ok, err := applyFreezeOp(&v, &next.Freezes, op, f)
		if err != nil {
			return nil, err
		}
		if !ok {
			v.Add(strings.TrimSuffix(f, "."), "only addFreeze, putFreeze, deleteFreeze and importIcs apply to the provider-wide freezes")
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
	}
	sortFreezes(next.Freezes)
	return next, nil
}

// DeleteTenant returns the tombstone that replaces a tenant's document: the tenant and
// everything in it are gone.
func DeleteTenant(tenant string) *typesv1.TenantDesign {
	return &typesv1.TenantDesign{Tenant: &typesv1.Tenant{TenantId: tenant}, Deleted: true}
}

// MissingError is an operation on a resource that does not exist. It matches
// apierr.ErrNotFound (a direct delete of an unknown resource is 404).
type MissingError struct {
	// Field names the operation inside a service request ("operations[2].deleteFreeze"); empty
	// for a direct write.
	Field string
	// What names the resource: `freeze "xmas"`.
	What string
}

// Error names the resource (and the operation).
func (e *MissingError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s does not exist", apierr.ErrNotFound, e.What)
	}
	return fmt.Sprintf("%s: %s: %s does not exist", apierr.ErrNotFound, e.Field, e.What)
}

// Is makes errors.Is(err, apierr.ErrNotFound) true.
func (e *MissingError) Is(target error) bool { return target == apierr.ErrNotFound }

// AsViolation turns a *MissingError of a service request's operation into a
// *apierr.ValidationError on that operation: raising a request that refers to something that
// does not exist is bad input, not an unknown route. Other errors are returned as they are.
func AsViolation(err error) error {
	var m *MissingError
	if !errors.As(err, &m) || m.Field == "" {
		return err
	}
	var v apierr.Violations
	v.Add(m.Field, fmt.Sprintf("refers to %s, which does not exist", m.What))
	return v.Err()
}

func notFound(f, what string) error {
	return &MissingError{Field: strings.TrimSuffix(f, "."), What: what}
}

func applyOne(v *apierr.Violations, doc *typesv1.TenantDesign, op *typesv1.Operation, kind, f string, c Change) error {
	if ok, err := applyFreezeOp(v, &doc.Freezes, op, f); ok || err != nil {
		return err
	}
	switch x := op.GetKind().(type) {
	case *typesv1.Operation_PutTenant:
		putTenant(v, doc, x.PutTenant, f, c)
	case *typesv1.Operation_PutAccount:
		a := normalizeAccount(v, f, x.PutAccount)
		doc.Accounts = upsert(doc.Accounts, a, func(x *typesv1.CloudAccount) bool { return x.GetAccountId() == a.GetAccountId() })
		if len(doc.Accounts) > MaxAccounts {
			v.Add(f+"accountId", fmt.Sprintf("a tenant has at most %d cloud accounts", MaxAccounts))
		}
	case *typesv1.Operation_DeleteAccount:
		i := findAccount(doc, x.DeleteAccount)
		if i < 0 {
			return notFound(f, fmt.Sprintf("cloud account %q of tenant %s", x.DeleteAccount, c.Tenant))
		}
		doc.Accounts = slices.Delete(doc.Accounts, i, i+1)
	case *typesv1.Operation_PutWave:
		putWave(v, doc, x.PutWave, f)
	case *typesv1.Operation_DeleteWave:
		i := findWave(doc, x.DeleteWave)
		if i < 0 {
			return notFound(f, fmt.Sprintf("wave %d of tenant %s", x.DeleteWave, c.Tenant))
		}
		doc.Waves = slices.Delete(doc.Waves, i, i+1)
		doc.Overrides = slices.DeleteFunc(doc.Overrides, func(o *typesv1.Override) bool { return o.GetWave() == x.DeleteWave })
	case *typesv1.Operation_PutOverride:
		o := normalizeOverride(v, f, doc, x.PutOverride, c)
		doc.Overrides = upsert(doc.Overrides, o, func(x *typesv1.Override) bool { return x.GetWave() == o.GetWave() && x.GetKey() == o.GetKey() })
		if len(doc.Overrides) > MaxOverrides {
			v.Add(f+"key", fmt.Sprintf("a tenant has at most %d overrides; delete old ones first", MaxOverrides))
		}
	case *typesv1.Operation_DeleteOverride:
		ref := x.DeleteOverride
		i := findOverride(doc, ref.GetWave(), ref.GetKey())
		if i < 0 {
			return notFound(f, fmt.Sprintf("override of wave %d occurrence %q of tenant %s", ref.GetWave(), ref.GetKey(), c.Tenant))
		}
		doc.Overrides = slices.Delete(doc.Overrides, i, i+1)
	case *typesv1.Operation_SetDefaultPolicy:
		p := NormalizePolicy(x.SetDefaultPolicy)
		checkPolicy(v, f, p)
		doc.Tenant.DefaultPolicy = p
		if len(*v) == 0 {
			checkDefaultPolicy(v, f, doc)
		}
	case *typesv1.Operation_SetWavePolicy:
		i := findWave(doc, x.SetWavePolicy.GetWave())
		if i < 0 {
			v.Add(f+"wave", fmt.Sprintf("must be a defined wave of the tenant, got %d", x.SetWavePolicy.GetWave()))
			return nil
		}
		w := doc.Waves[i]
		w.Policy = nil
		if p := x.SetWavePolicy.GetPolicy(); p != nil {
			w.Policy = NormalizePolicy(p)
		}
		checkWavePolicy(v, f+"policy.", doc, w)
	default:
		v.Add(strings.TrimSuffix(f, "."), "must set one kind of operation: "+opKinds)
	}
	return nil
}

// putTenant creates the tenant or replaces its settings.
func putTenant(v *apierr.Violations, doc *typesv1.TenantDesign, t *typesv1.Tenant, f string, c Change) {
	n := normalizeTenant(v, f, c.Tenant, t)
	if doc.Tenant == nil {
		n.CreateTime = timestamp(c.Now)
	} else {
		n.CreateTime = doc.Tenant.GetCreateTime()
	}
	if high := highestWave(doc); n.GetWaveLimit() < high {
		v.Add(f+"waveLimit", fmt.Sprintf("must be at least %d, the highest defined wave (delete the wave first), got %d", high, n.GetWaveLimit()))
	}
	doc.Tenant = n
	if len(*v) == 0 {
		checkDefaultPolicy(v, f+"defaultPolicy.", doc)
	}
}

// putWave creates or replaces a wave.
func putWave(v *apierr.Violations, doc *typesv1.TenantDesign, in *typesv1.Wave, f string) {
	w := &typesv1.Wave{Number: in.GetNumber(), Name: in.GetName(), Paused: in.GetPaused()}
	if limit := doc.GetTenant().GetWaveLimit(); w.Number < 1 || w.Number > limit {
		v.Add(f+"number", fmt.Sprintf("must be from 1 to %d (the tenant's wave limit), got %d", limit, w.Number))
	}
	if w.Name == "" {
		w.Name = fmt.Sprintf("Wave %d", w.Number)
	}
	checkText(v, f+"name", w.Name, 100, false)
	for _, other := range doc.GetWaves() {
		if other.GetNumber() != w.Number && other.GetName() == w.Name {
			v.Add(f+"name", fmt.Sprintf("must be unique within the tenant: wave %d is already named %q", other.GetNumber(), w.Name))
		}
	}
	if in.GetSchedule() == nil {
		v.Add(f+"schedule", "is required")
	} else {
		w.Schedule = normalizeSchedule(v, f+"schedule.", in.GetSchedule())
	}
	keys := slices.Clone(in.GetSkipKeys())
	for i, k := range keys {
		checkKey(v, fmt.Sprintf("%sskipKeys[%d]", f, i), k)
	}
	slices.Sort(keys)
	w.SkipKeys = slices.Compact(keys)
	if len(w.SkipKeys) > MaxSkipKeys {
		v.Add(f+"skipKeys", fmt.Sprintf("must list at most %d occurrences, got %d", MaxSkipKeys, len(w.SkipKeys)))
	}
	if in.GetPolicy() != nil {
		w.Policy = NormalizePolicy(in.GetPolicy())
		checkPolicy(v, f+"policy.", w.Policy)
	}
	if len(*v) > 0 {
		return
	}
	checkWavePolicy(v, f+"policy.", doc, w)
	doc.Waves = upsert(doc.Waves, w, func(x *typesv1.Wave) bool { return x.GetNumber() == w.GetNumber() })
}

// checkWavePolicy checks the policy a wave runs under (its own or the tenant's default)
// against the wave's window.
func checkWavePolicy(v *apierr.Violations, prefix string, doc *typesv1.TenantDesign, w *typesv1.Wave) {
	if w.GetPolicy() != nil {
		checkPolicyWindow(v, prefix, w.GetPolicy(), Window(w.GetSchedule()), "")
		return
	}
	checkPolicyWindow(v, prefix, doc.GetTenant().GetDefaultPolicy(), Window(w.GetSchedule()),
		" (the tenant's default policy; give the wave a policy of its own or a longer window)")
}

// checkDefaultPolicy checks the tenant's default policy against every wave that uses it.
func checkDefaultPolicy(v *apierr.Violations, prefix string, doc *typesv1.TenantDesign) {
	for _, w := range doc.GetWaves() {
		if w.GetPolicy() == nil {
			checkPolicyWindow(v, prefix, doc.GetTenant().GetDefaultPolicy(), Window(w.GetSchedule()),
				fmt.Sprintf(" (wave %d runs under the default policy)", w.GetNumber()))
		}
	}
}

func highestWave(doc *typesv1.TenantDesign) int32 {
	var high int32
	for _, w := range doc.GetWaves() {
		high = max(high, w.GetNumber())
	}
	return high
}

// applyFreezeOp applies a freeze operation to freezes; false when op is not one.
func applyFreezeOp(v *apierr.Violations, freezes *[]*typesv1.Freeze, op *typesv1.Operation, f string) (bool, error) {
	switch x := op.GetKind().(type) {
	case *typesv1.Operation_AddFreeze:
		fr := normalizeFreeze(v, f, x.AddFreeze, "api")
		if findFreeze(*freezes, fr.GetId()) >= 0 {
			v.Add(f+"id", fmt.Sprintf("freeze %q already exists (PUT replaces it)", fr.GetId()))
			return true, nil
		}
		*freezes = append(*freezes, fr)
	case *typesv1.Operation_PutFreeze:
		upsertFreeze(freezes, normalizeFreeze(v, f, x.PutFreeze, "api"))
	case *typesv1.Operation_DeleteFreeze:
		i := findFreeze(*freezes, x.DeleteFreeze)
		if i < 0 {
			return true, notFound(f, fmt.Sprintf("freeze %q", x.DeleteFreeze))
		}
		*freezes = slices.Delete(*freezes, i, i+1)
	case *typesv1.Operation_ImportIcs:
		for _, fr := range importICS(v, f, x.ImportIcs) {
			upsertFreeze(freezes, fr)
		}
	default:
		return false, nil
	}
	if len(*freezes) > MaxFreezes {
		v.Add(strings.TrimSuffix(f, "."), fmt.Sprintf("at most %d freezes, got %d", MaxFreezes, len(*freezes)))
	}
	return true, nil
}

func upsertFreeze(freezes *[]*typesv1.Freeze, fr *typesv1.Freeze) {
	*freezes = upsert(*freezes, fr, func(x *typesv1.Freeze) bool { return x.GetId() == fr.GetId() })
}

// upsert replaces the item of list that same matches, or appends item.
func upsert[T any](list []T, item T, same func(T) bool) []T {
	if i := slices.IndexFunc(list, same); i >= 0 {
		list[i] = item
		return list
	}
	return append(list, item)
}

// sortTenant puts a document's lists in their canonical order.
func sortTenant(doc *typesv1.TenantDesign) {
	slices.SortFunc(doc.Accounts, func(a, b *typesv1.CloudAccount) int { return cmp.Compare(a.GetAccountId(), b.GetAccountId()) })
	slices.SortFunc(doc.Waves, func(a, b *typesv1.Wave) int { return cmp.Compare(a.GetNumber(), b.GetNumber()) })
	sortFreezes(doc.Freezes)
	slices.SortFunc(doc.Overrides, func(a, b *typesv1.Override) int {
		return cmp.Or(cmp.Compare(a.GetWave(), b.GetWave()), cmp.Compare(a.GetKey(), b.GetKey()))
	})
}

func sortFreezes(fs []*typesv1.Freeze) {
	slices.SortFunc(fs, func(a, b *typesv1.Freeze) int { return cmp.Compare(a.GetId(), b.GetId()) })
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
