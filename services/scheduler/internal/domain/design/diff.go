package design

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Resource kinds of a ResourceChange.
const (
	KindTenant   = "tenant"
	KindAccount  = "account"
	KindWave     = "wave"
	KindFreeze   = "freeze"
	KindOverride = "override"
)

// Diff lists what changed from before to after, resource by resource: the tenant's settings,
// then accounts, waves, freezes and overrides, each created, updated or deleted, with its JSON
// form before and after. Either may be nil or a tombstone (no resources). An empty list means
// the write would change nothing.
func Diff(before, after *typesv1.TenantDesign) []*typesv1.ResourceChange {
	b, a := live(before), live(after)
	var out []*typesv1.ResourceChange
	out = diffOne(out, KindTenant, "tenant", settings(b.GetTenant()), settings(a.GetTenant()))
	out = diffList(out, KindAccount, b.GetAccounts(), a.GetAccounts(), func(x *typesv1.CloudAccount) string { return "accounts/" + x.GetAccountId() })
	out = diffList(out, KindWave, b.GetWaves(), a.GetWaves(), func(x *typesv1.Wave) string { return fmt.Sprintf("waves/%d", x.GetNumber()) })
	out = diffList(out, KindFreeze, b.GetFreezes(), a.GetFreezes(), freezeName)
	return diffList(out, KindOverride, b.GetOverrides(), a.GetOverrides(), func(x *typesv1.Override) string {
		return fmt.Sprintf("overrides/%d/%s", x.GetWave(), x.GetKey())
	})
}

// DiffGlobal lists what changed in the provider-wide freezes.
func DiffGlobal(before, after *typesv1.GlobalDesign) []*typesv1.ResourceChange {
	return diffList(nil, KindFreeze, before.GetFreezes(), after.GetFreezes(), freezeName)
}

func freezeName(x *typesv1.Freeze) string { return "freezes/" + x.GetId() }

func live(d *typesv1.TenantDesign) *typesv1.TenantDesign {
	if !Exists(d) {
		return nil
	}
	return d
}

// settings is the tenant without its output-only times, which change with every write.
func settings(t *typesv1.Tenant) *typesv1.Tenant {
	if t == nil {
		return nil
	}
	c := proto.Clone(t).(*typesv1.Tenant)
	c.CreateTime, c.UpdateTime = nil, nil
	return c
}

func diffList[T proto.Message](out []*typesv1.ResourceChange, kind string, before, after []T, name func(T) string) []*typesv1.ResourceChange {
	old := make(map[string]T, len(before))
	for _, x := range before {
		old[name(x)] = x
	}
	seen := make(map[string]bool, len(after))
	for _, x := range after {
		n := name(x)
		seen[n] = true
		if o, ok := old[n]; ok {
			out = diffOne(out, kind, n, o, x)
		} else {
			var zero T
			out = diffOne(out, kind, n, zero, x)
		}
	}
	for _, x := range before {
		if n := name(x); !seen[n] {
			var zero T
			out = diffOne(out, kind, n, x, zero)
		}
	}
	return out
}

func diffOne[T proto.Message](out []*typesv1.ResourceChange, kind, name string, before, after T) []*typesv1.ResourceChange {
	hasB, hasA := present(before), present(after)
	c := &typesv1.ResourceChange{Kind: kind, Resource: name}
	switch {
	case !hasB && !hasA:
		return out
	case !hasB:
		c.Action, c.After = typesv1.ChangeAction_CHANGE_ACTION_CREATED, toStruct(after)
	case !hasA:
		c.Action, c.Before = typesv1.ChangeAction_CHANGE_ACTION_DELETED, toStruct(before)
	case proto.Equal(before, after):
		return out
	default:
		c.Action, c.Before, c.After = typesv1.ChangeAction_CHANGE_ACTION_UPDATED, toStruct(before), toStruct(after)
	}
	return append(out, c)
}

func present(m proto.Message) bool { return m != nil && m.ProtoReflect().IsValid() }

// toStruct is m's JSON form as a Struct (the REST API's shape: lowerCamelCase, zero values
// left out).
func toStruct(m proto.Message) *structpb.Struct {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(b, s); err != nil {
		return nil
	}
	return s
}
