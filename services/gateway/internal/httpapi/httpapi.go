// Package httpapi builds the gateway's HTTP handler: the grpc-gateway mux over the scheduler,
// service design, reporting and catalog gRPC APIs and the gateway's own credentials API, the
// OpenAPI document, the Guard (authentication, rate limits, body limits, authorization of every
// call by its declared rule, audit), and the middleware that gives every request a correlation
// id, logs it once, turns a panic into a JSON 500 and takes raw iCalendar uploads.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/textproto"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	credentialsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/credentials/v1"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	snapshotterv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/snapshotter/v1"
)

// CorrelationHeader is the HTTP header carrying a request's correlation id, in and out.
const CorrelationHeader = "X-Correlation-Id"

// correlationMetadata is the gRPC metadata key the services read (host.CorrelationHeader).
const correlationMetadata = "x-correlation-id"

// Headers of the service design API and the gRPC metadata that carries them. Who makes a
// change is the caller's credential, never a header.
const (
	// IfMatchHeader carries the revision a change is based on.
	IfMatchHeader   = "If-Match"
	ifMatchMetadata = "if-match"
	// ETagHeader answers the revision of what was read or written.
	ETagHeader   = "ETag"
	etagMetadata = "etag"
)

// Backends are the gRPC connections of the services the gateway fronts.
type Backends struct {
	Scheduler grpc.ClientConnInterface
	Reporting grpc.ClientConnInterface
	Catalog   grpc.ClientConnInterface
	Design    grpc.ClientConnInterface
	Restore   grpc.ClientConnInterface
	Notifier  grpc.ClientConnInterface
	// Auth is the gateway's own credentials service, called in process behind the guard.
	Auth credentialsv1.CredentialsServiceServer
}

// Options configure the handler.
type Options struct {
	// Logger logs one line per request. Required.
	Logger *slog.Logger
	// OpenAPI holds the generated OpenAPI v2 documents (*.json at any depth). Required.
	OpenAPI fs.FS
	// Guard authenticates and authorizes every request. Required; the backend connections
	// must call through its Interceptor.
	Guard *Guard
}

// NewHandler returns the gateway's HTTP handler.
func NewHandler(ctx context.Context, b Backends, o Options) (http.Handler, error) {
	doc, err := LoadOpenAPI(o.OpenAPI)
	if err != nil {
		return nil, err
	}
	if o.Guard == nil || b.Auth == nil {
		return nil, errors.New("httpapi: Guard and Backends.Auth are required")
	}
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, Marshaler()),
		runtime.WithMarshalerOption(MIMECSV, CSVMarshaler{JSON: Marshaler()}),
		runtime.WithIncomingHeaderMatcher(incomingHeaders),
		runtime.WithOutgoingHeaderMatcher(outgoingHeaders),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
	)
	if err := schedulerv1.RegisterSchedulerServiceHandlerClient(ctx, mux, schedulerv1.NewSchedulerServiceClient(b.Scheduler)); err != nil {
		return nil, fmt.Errorf("register scheduler routes: %w", err)
	}
	if err := reportingv1.RegisterReportingServiceHandlerClient(ctx, mux, reportingv1.NewReportingServiceClient(b.Reporting)); err != nil {
		return nil, fmt.Errorf("register reporting routes: %w", err)
	}
	if err := catalogv1.RegisterCatalogServiceHandlerClient(ctx, mux, catalogv1.NewCatalogServiceClient(b.Catalog)); err != nil {
		return nil, fmt.Errorf("register catalog routes: %w", err)
	}
	if err := designv1.RegisterDesignServiceHandlerClient(ctx, mux, designv1.NewDesignServiceClient(b.Design)); err != nil {
		return nil, fmt.Errorf("register design routes: %w", err)
	}
	if err := snapshotterv1.RegisterRestoreServiceHandlerClient(ctx, mux, snapshotterv1.NewRestoreServiceClient(b.Restore)); err != nil {
		return nil, fmt.Errorf("register restore routes: %w", err)
	}
	if b.Notifier != nil {
		if err := notifierv1.RegisterNotifierServiceHandlerClient(ctx, mux, notifierv1.NewNotifierServiceClient(b.Notifier)); err != nil {
			return nil, fmt.Errorf("register notifier routes: %w", err)
		}
	}
	local := newLocalConn(&credentialsv1.CredentialsService_ServiceDesc, b.Auth, o.Guard.Interceptor())
	if err := credentialsv1.RegisterCredentialsServiceHandlerClient(ctx, mux, credentialsv1.NewCredentialsServiceClient(local)); err != nil {
		return nil, fmt.Errorf("register credentials routes: %w", err)
	}
	if err := mux.HandlePath(http.MethodGet, OpenAPIPath, func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}); err != nil {
		return nil, fmt.Errorf("register /openapi.json: %w", err)
	}
	return withRequestLog(o.Logger, o.Guard.middleware(withICSUpload(withAdvisoryImport(withCSVExport(mux))))), nil
}

// Marshaler returns the JSON marshaler of requests and responses. Responses carry every field,
// zero values included (EmitUnpopulated), so a coverage of 0 or an empty list is visible rather
// than absent; names are lowerCamelCase JSON names (UseProtoNames false), grpc-gateway's default.
// Request bodies with unknown fields are refused (400), so a misspelt field is not ignored.
func Marshaler() *runtime.JSONPb {
	return &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true, UseProtoNames: false},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}
}

// incomingHeaders forwards the correlation id and If-Match headers as the metadata keys the
// services read, and the permanent HTTP headers as grpc-gateway does by default (but not
// Authorization, which the guard has taken off: the credential stays at the gateway, which
// forwards the identity it proved).
// Nothing else reaches the services, so a client cannot set arbitrary metadata, least of all
// an identity.
func incomingHeaders(key string) (string, bool) {
	switch textproto.CanonicalMIMEHeaderKey(key) {
	case CorrelationHeader:
		return correlationMetadata, true
	case IfMatchHeader:
		return ifMatchMetadata, true
	case "Authorization":
		return "", false
	}
	return runtime.DefaultHeaderMatcher(key)
}

// outgoingHeaders lets exactly one piece of gRPC response metadata out: the design API's etag,
// as the ETag header. Everything else stays inside.
func outgoingHeaders(key string) (string, bool) {
	if key == etagMetadata {
		return ETagHeader, true
	}
	return "", false
}

// errorHandler writes grpc-gateway's JSON status body. It differs from the default mapping in one
// place: FailedPrecondition is 412 Precondition Failed (grpc-gateway says 400), so a client can
// tell "your request is malformed" from "the system is not in a state to do it".
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	err = tooLarge(r, err)
	if s, ok := status.FromError(err); ok && s.Code() == codes.FailedPrecondition {
		err = &runtime.HTTPStatusError{HTTPStatus: http.StatusPreconditionFailed, Err: err}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// routingErrorHandler answers a request no route matches with the same JSON status body as any
// other error, naming the method and path; a known path with the wrong method is 405.
func routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	var err error
	switch httpStatus {
	case http.StatusNotFound:
		err = status.Errorf(codes.NotFound, "no route for %s %s", r.Method, r.URL.Path)
	case http.StatusMethodNotAllowed:
		err = &runtime.HTTPStatusError{
			HTTPStatus: http.StatusMethodNotAllowed,
			Err:        status.Errorf(codes.Unimplemented, "method %s is not allowed on %s", r.Method, r.URL.Path),
		}
	case http.StatusBadRequest:
		err = status.Errorf(codes.InvalidArgument, "malformed request path %q", r.URL.Path)
	default:
		err = &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: status.Error(codes.Unknown, http.StatusText(httpStatus))}
	}
	errorHandler(ctx, mux, m, w, r, err)
}
