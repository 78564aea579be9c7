package domain_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// runHalted is a message shaped like the run engine's RunHalted (its branch is not on main),
// in a package of its own so that it does not clash with the real one once merged.
func runHalted(t *testing.T) protoreflect.MessageDescriptor {
	t.Helper()
	str, i32 := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum()
	field := func(name string, n int32, typ *descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(n), Type: typ, Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()}
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name: proto.String("notifiertest/run_halted.proto"), Package: proto.String("notifiertest"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("RunHalted"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("tenant", 1, str), field("run_id", 2, str), field("wave", 3, i32), field("errors", 4, i32), field("error_budget", 5, i32),
			},
		}},
	}, nil)
	require.NoError(t, err)
	return fd.Messages().Get(0)
}

func TestARunEngineEventIsNotifiedByNameAndOnceWithTheRunsEnd(t *testing.T) {
	md := runHalted(t)
	m := dynamicpb.NewMessage(md)
	set := func(name string, v protoreflect.Value) { m.Set(md.Fields().ByName(protoreflect.Name(name)), v) }
	set("tenant", protoreflect.ValueOfString("acme"))
	set("run_id", protoreflect.ValueOfString("run-1"))
	set("wave", protoreflect.ValueOfInt32(2))
	set("errors", protoreflect.ValueOfInt32(7))
	set("error_budget", protoreflect.ValueOfInt32(5))
	ev := &events.Event{ID: "patch.acme.run.halted/run-1", Type: "patchwave.events.v1.RunHalted", Tenant: "acme", Data: m}

	n, ok, err := domain.Notify(ev)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, domain.TypeRunHalted, n.Type)
	assert.Equal(t, domain.SeverityCritical, n.Severity)
	assert.True(t, n.Failure)
	assert.EqualValues(t, 2, n.Wave)
	assert.Equal(t, "acme wave 2 run run-1 halted (error budget exceeded): 7 failed jobs, error budget 5", n.Summary)
	assert.False(t, n.IsRunEnd(), "the digest waits for the run's end")

	end, ok, err := domain.Notify(events.MustNew("acme", "run-1", &eventsv1.RunCompleted{Tenant: "acme", RunId: "run-1", Wave: 2,
		State: typesv1.RunState_RUN_STATE_HALTED, Total: 20, Succeeded: 3, Failed: 7}))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, domain.TypeRunHalted, end.Type)
	assert.Equal(t, n.ID, end.ID, "the halt is one notification, whichever event tells it first")
	assert.True(t, end.IsRunEnd())

	for _, s := range domain.RunEventSubjects {
		st, err := events.StreamFor(s)
		require.NoError(t, err)
		assert.Equal(t, events.StreamTenant, st)
	}
}
