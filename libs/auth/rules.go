package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/patchwave/patchwave/libs/apierr"
	authv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/auth/v1"
)

// ServicePrefix starts the full name of every Patchwave service; each of their methods must
// declare a Rule.
const ServicePrefix = "patchwave."

// Rule is the access rule an rpc declares (patchwave.auth.v1.rule).
type Rule struct {
	// Method is the rpc's gRPC name, "/patchwave.design.v1.DesignService/PutWave".
	Method string
	// Permission the caller needs.
	Permission Permission
	// TenantField is the request field naming the tenant, or "" for a method about no tenant.
	TenantField string
	// Mutates says whether the method changes anything (it is audited).
	Mutates bool

	tenant protoreflect.FieldDescriptor
}

// Scoped reports whether the method is about one tenant (its rule names a tenant field).
func (r Rule) Scoped() bool { return r.TenantField != "" }

// Tenant returns the tenant req names in the rule's tenant field ("" for the provider-wide
// resource, or for a method about no tenant).
func (r Rule) Tenant(req proto.Message) string {
	if r.tenant == nil || req == nil {
		return ""
	}
	m := req.ProtoReflect()
	if m.Descriptor().FullName() != r.tenant.ContainingMessage().FullName() {
		return ""
	}
	return m.Get(r.tenant).String()
}

var rules sync.Map // method -> ruleEntry

type ruleEntry struct {
	rule Rule
	err  error
}

// RuleOf returns the rule of the rpc named method ("/pkg.Service/Method"), read from the
// protobuf registry. It is an error for a method the registry does not know, one without a
// rule, a permission the table does not know, or a tenant field that is not a string field
// of the request.
func RuleOf(method string) (Rule, error) {
	if e, ok := rules.Load(method); ok {
		return e.(ruleEntry).rule, e.(ruleEntry).err
	}
	r, err := loadRule(method)
	rules.Store(method, ruleEntry{rule: r, err: err})
	return r, err
}

func loadRule(method string) (Rule, error) {
	name := protoreflect.FullName(strings.ReplaceAll(strings.TrimPrefix(method, "/"), "/", "."))
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
	if err != nil {
		return Rule{}, fmt.Errorf("rpc %s: not in the protobuf registry: %w", method, err)
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return Rule{}, fmt.Errorf("rpc %s: %s is not a method", method, name)
	}
	return ruleOf(md)
}

// ruleOf reads and checks md's rule.
func ruleOf(md protoreflect.MethodDescriptor) (Rule, error) {
	method := "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
	var pb *authv1.Rule
	if opts := md.Options(); opts != nil && proto.HasExtension(opts, authv1.E_Rule) {
		pb, _ = proto.GetExtension(opts, authv1.E_Rule).(*authv1.Rule)
	}
	if pb == nil {
		return Rule{}, fmt.Errorf("rpc %s: declares no access rule: add option (patchwave.auth.v1.rule) = {permission: \"<area>.<action>\", tenant_field: \"tenant\", mutates: true|false}", method)
	}
	r := Rule{Method: method, Permission: Permission(pb.GetPermission()), TenantField: pb.GetTenantField(), Mutates: pb.GetMutates()}
	var errs []error
	if !r.Permission.Known() {
		errs = append(errs, fmt.Errorf("rpc %s: permission %q is not in libs/auth's permission table (one of %s)", method, r.Permission, joinPermissions()))
	}
	if r.TenantField != "" {
		f := md.Input().Fields().ByName(protoreflect.Name(r.TenantField))
		switch {
		case f == nil:
			errs = append(errs, fmt.Errorf("rpc %s: tenant_field %q is not a field of %s", method, r.TenantField, md.Input().FullName()))
		case f.Kind() != protoreflect.StringKind || f.IsList() || f.IsMap():
			errs = append(errs, fmt.Errorf("rpc %s: tenant_field %q of %s must be a string", method, r.TenantField, md.Input().FullName()))
		default:
			r.tenant = f
		}
	}
	return r, errors.Join(errs...)
}

func joinPermissions() string {
	ps := Permissions()
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

// Rules returns the rule of every method of every patchwave.* service in the protobuf
// registry, sorted by method, and every problem found (a method without a rule, an unknown
// permission, a bad tenant field). Import github.com/patchwave/patchwave/proto to have every
// generated package registered.
func Rules() ([]Rule, error) { return rulesIn(protoregistry.GlobalFiles) }

// rulesIn is Rules over the files of reg.
func rulesIn(reg *protoregistry.Files) ([]Rule, error) {
	var out []Rule
	var errs []error
	reg.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			if !strings.HasPrefix(string(sd.FullName()), ServicePrefix) {
				continue
			}
			for j := range sd.Methods().Len() {
				r, err := ruleOf(sd.Methods().Get(j))
				if err != nil {
					errs = append(errs, err)
					continue
				}
				out = append(out, r)
			}
		}
		return true
	})
	slices.SortFunc(out, func(a, b Rule) int { return strings.Compare(a.Method, b.Method) })
	return out, errors.Join(errs...)
}

// CheckMethods checks that each of methods ("/pkg.Service/Method") of a patchwave.* service
// has a valid rule; other methods (grpc.health.v1) are skipped. Servers and the gateway call it
// at start, so nothing serves a method without a rule.
func CheckMethods(methods []string) error {
	var errs []error
	for _, m := range methods {
		if !strings.HasPrefix(strings.TrimPrefix(m, "/"), ServicePrefix) {
			continue
		}
		if _, err := RuleOf(m); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Authorize decides whether id may call the method of r with req, and returns nil or an error
// wrapping apierr.ErrUnauthenticated, apierr.ErrNotFound or apierr.ErrPermissionDenied (see
// the package comment for the order).
func Authorize(id *Identity, r Rule, req proto.Message) error {
	if id == nil {
		return fmt.Errorf("%w: the call carries no credential", apierr.ErrUnauthenticated)
	}
	if r.Scoped() && id.Tenant != "" {
		switch t := r.Tenant(req); t {
		case id.Tenant:
		case "":
			return fmt.Errorf("%w: %s is about the provider-wide resources, which a credential of tenant %s does not reach",
				apierr.ErrPermissionDenied, methodName(r.Method), id.Tenant)
		default:
			return TenantNotFound(t)
		}
	}
	if !id.Can(r.Permission) {
		return fmt.Errorf("%w: %s needs permission %s, which the roles %s do not grant (granted to %s)",
			apierr.ErrPermissionDenied, methodName(r.Method), r.Permission, strings.Join(id.RoleNames(), ", "), roleList(GrantedBy(r.Permission)))
	}
	return nil
}

// TenantNotFound is the error of a tenant that does not exist; Authorize answers it for every
// other tenant than the caller's, so that the two cannot be told apart.
func TenantNotFound(tenant string) error {
	return fmt.Errorf("%w: tenant %s is not in the service design", apierr.ErrNotFound, tenant)
}

// CallTenant returns the tenant a call is about, for its audit record: the tenant req names,
// ProviderTenant for a provider-wide call, and for a method about no tenant the caller's own
// (ProviderTenant for provider roles).
func CallTenant(id *Identity, r Rule, req proto.Message) string {
	if r.Scoped() {
		if t := r.Tenant(req); t != "" {
			return t
		}
		return ProviderTenant
	}
	if id == nil {
		return ProviderTenant
	}
	return id.Scope()
}

func methodName(method string) string {
	if i := strings.LastIndex(method, "/"); i >= 0 {
		return method[i+1:]
	}
	return method
}

func roleList(rs []Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}
