package auth_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/patchwave/patchwave/libs/auth"
	_ "github.com/patchwave/patchwave/proto" // every generated package, registered
	authv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/auth/v1"
)

// TestEveryMethodOfEveryPatchwaveServiceDeclaresARule ranges over the protobuf registry (every
// generated package: proto/registry.go, whose own test proves it misses none) and requires a
// valid rule on every method of every patchwave.* service.
func TestEveryMethodOfEveryPatchwaveServiceDeclaresARule(t *testing.T) {
	rules, err := auth.Rules()
	require.NoError(t, err, "every rpc declares option (patchwave.auth.v1.rule) with a known permission and a string tenant field")

	methods := 0
	services := map[string]bool{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			if strings.HasPrefix(string(sd.FullName()), auth.ServicePrefix) {
				services[string(sd.FullName())] = true
				methods += sd.Methods().Len()
			}
		}
		return true
	})
	require.Len(t, rules, methods, "one rule per method")
	for _, s := range []string{"patchwave.scheduler.v1.SchedulerService", "patchwave.design.v1.DesignService",
		"patchwave.reporting.v1.ReportingService", "patchwave.catalog.v1.CatalogService", "patchwave.credentials.v1.CredentialsService"} {
		require.True(t, services[s], "%s is registered", s)
	}
	for _, r := range rules {
		got, err := auth.RuleOf(r.Method)
		require.NoError(t, err)
		require.Equal(t, r.Permission, got.Permission, r.Method)
		// A read-only role must never get a mutating method: every permission of a
		// mutating method is denied to the tenant viewer.
		if r.Mutates {
			require.False(t, auth.Identity{Subject: "v", Tenant: "acme", Roles: []auth.Role{auth.RoleTenantViewer}}.Can(r.Permission),
				"%s mutates, but a tenant-viewer has %s", r.Method, r.Permission)
		}
	}
}

// TestRulesRefuseAMethodWithoutAValidRule proves the registry check is not vacuous: a
// synthetic service with a method without a rule, one with an unknown permission and one with
// a tenant field that is not a string field all fail it, each named.
func TestRulesRefuseAMethodWithoutAValidRule(t *testing.T) {
	ruled := func(r *authv1.Rule) *descriptorpb.MethodOptions {
		o := &descriptorpb.MethodOptions{}
		proto.SetExtension(o, authv1.E_Rule, r)
		return o
	}
	method := func(name string, opts *descriptorpb.MethodOptions) *descriptorpb.MethodDescriptorProto {
		return &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(".patchwave.test.v1.Req"),
			OutputType: proto.String(".patchwave.test.v1.Req"), Options: opts}
	}
	fdp := &descriptorpb.FileDescriptorProto{
		Name: proto.String("patchwave/test/v1/test.proto"), Package: proto.String("patchwave.test.v1"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Req"), Field: []*descriptorpb.FieldDescriptorProto{
			{Name: proto.String("tenant"), Number: proto.Int32(1), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), JsonName: proto.String("tenant")},
			{Name: proto.String("wave"), Number: proto.Int32(2), Type: descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum(), JsonName: proto.String("wave")},
		}}},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("TestService"), Method: []*descriptorpb.MethodDescriptorProto{
			method("Good", ruled(&authv1.Rule{Permission: "design.read", TenantField: "tenant"})),
			method("NoRule", nil),
			method("UnknownPermission", ruled(&authv1.Rule{Permission: "design.everything"})),
			method("MissingField", ruled(&authv1.Rule{Permission: "design.read", TenantField: "customer"})),
			method("NotAString", ruled(&authv1.Rule{Permission: "design.read", TenantField: "wave"})),
		}}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	require.NoError(t, err)
	reg := &protoregistry.Files{}
	require.NoError(t, reg.RegisterFile(fd))

	rules, err := auth.RulesIn(reg)
	require.Len(t, rules, 1)
	require.Equal(t, "/patchwave.test.v1.TestService/Good", rules[0].Method)
	require.Error(t, err)
	for _, want := range []string{
		"rpc /patchwave.test.v1.TestService/NoRule: declares no access rule",
		`rpc /patchwave.test.v1.TestService/UnknownPermission: permission "design.everything" is not in libs/auth's permission table`,
		`rpc /patchwave.test.v1.TestService/MissingField: tenant_field "customer" is not a field of patchwave.test.v1.Req`,
		`rpc /patchwave.test.v1.TestService/NotAString: tenant_field "wave" of patchwave.test.v1.Req must be a string`,
	} {
		require.Contains(t, err.Error(), want)
	}
}

func TestCheckMethods(t *testing.T) {
	require.NoError(t, auth.CheckMethods([]string{"/patchwave.design.v1.DesignService/PutWave", "/grpc.health.v1.Health/Check"}),
		"a declared rule passes and methods of other services are not Patchwave's to check")
	err := auth.CheckMethods([]string{"/patchwave.design.v1.DesignService/NoSuchMethod"})
	require.ErrorContains(t, err, "not in the protobuf registry")
}
