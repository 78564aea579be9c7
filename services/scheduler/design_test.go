package scheduler_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/auth"
	libdesign "github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// as is a context whose calls act as actor, and expect revision rev when rev > 0. An actor
// "<name>@acme" is an admin of tenant acme, any other an operator.
func as(ctx context.Context, actor string, rev uint64) context.Context {
	id := auth.Identity{Subject: actor, Roles: []auth.Role{auth.RoleOperator}}
	if strings.HasSuffix(actor, "@acme") {
		id.Tenant, id.Roles = "acme", []auth.Role{auth.RoleTenantAdmin}
	}
	ctx = stagetest.As(ctx, id)
	if rev > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, "if-match", strconv.Quote(strconv.FormatUint(rev, 10)))
	}
	return ctx
}

// etagOf parses the etag header a call answered.
func etagOf(t *testing.T, md metadata.MD) uint64 {
	t.Helper()
	v := md.Get("etag")
	require.Len(t, v, 1, "the call answers an etag")
	rev, err := strconv.ParseUint(v[0][1:len(v[0])-1], 10, 64)
	require.NoError(t, err, v[0])
	return rev
}

func wave(number int32, offset int32) *designv1.PutWaveRequest {
	return &designv1.PutWaveRequest{Tenant: "acme", Wave: number, Reason: "test", Definition: &typesv1.Wave{Schedule: &typesv1.Schedule{
		WeekOfMonth: 2, DayOfWeek: "TUESDAY", OffsetDays: offset, StartTime: "02:00", EndTime: "06:00", TimeZone: "Europe/Berlin",
	}}}
}

// designEvents reads the design.changed events of a tenant, in stream order.
func (e *env) designEvents(t *testing.T, tenant string) []*eventsv1.DesignChanged {
	t.Helper()
	var out []*eventsv1.DesignChanged
	for _, ev := range e.stored(t, "patch."+tenant+".design.changed") {
		dc := ev.Data.(*eventsv1.DesignChanged)
		require.Equal(t, "patch."+tenant+".design.changed/"+strconv.FormatUint(dc.GetNewRevision(), 10), ev.ID, "the id is tenant and new revision")
		out = append(out, dc)
	}
	return out
}

func TestTwoWritersOfOneRevisionOneWinsTheOtherGetsTheConflict(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	e.policy = nil
	svc := e.start(t, store.NewMemory())
	var md metadata.MD
	_, err := svc.design.GetTenant(ctx, &designv1.GetTenantRequest{Tenant: "acme"}, grpc.Header(&md))
	require.NoError(t, err)
	rev := etagOf(t, md)

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { _, errs[i] = svc.design.PutWave(as(ctx, "writer-"+strconv.Itoa(i), rev), wave(1, int32(5+i))) })
	}
	wg.Wait()
	var won, lost int
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		lost++
		require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
		require.Contains(t, status.Convert(err).Message(), "revision "+strconv.FormatUint(rev, 10)+" is stale: the current revision is ")
	}
	require.Equal(t, 1, won)
	require.Equal(t, 1, lost)

	// The loser reads again and wins with the new revision.
	_, err = svc.design.GetTenant(ctx, &designv1.GetTenantRequest{Tenant: "acme"}, grpc.Header(&md))
	require.NoError(t, err)
	current := etagOf(t, md)
	require.Greater(t, current, rev)
	_, err = svc.design.PutWave(as(ctx, "writer-late", current), wave(1, 9), grpc.Header(&md))
	require.NoError(t, err)
	require.Greater(t, etagOf(t, md), current)
	// Without If-Match a write is applied to whatever the revision is.
	_, err = svc.design.PutWave(as(ctx, "writer-blind", 0), wave(1, 10))
	require.NoError(t, err)
}

func TestEveryDesignChangeIsAuditedWithActorReasonRevisionsAndBeforeAfter(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	e.policy = nil
	svc := e.start(t, store.NewMemory())
	seeded := len(e.designEvents(t, "acme"))
	require.Equal(t, 3, seeded, "the tenant and its two waves")

	var md metadata.MD
	cctx := metadata.AppendToOutgoingContext(as(ctx, "alice@provider", 0), "x-correlation-id", "corr-77")
	_, err := svc.design.PutWave(cctx, &designv1.PutWaveRequest{Tenant: "acme", Wave: 2, Reason: "CAB-1234: later window",
		Definition: &typesv1.Wave{Schedule: &typesv1.Schedule{WeekOfMonth: 2, DayOfWeek: "TUESDAY", OffsetDays: 9, StartTime: "03:00", EndTime: "07:00", TimeZone: "Europe/Berlin"}}},
		grpc.Header(&md))
	require.NoError(t, err)
	rev := etagOf(t, md)
	_, err = svc.design.DeleteWave(as(ctx, "bob@provider", 0), &designv1.DeleteWaveRequest{Tenant: "acme", Wave: 2, Reason: "wave retired"})
	require.NoError(t, err)
	// A write that changes nothing writes nothing.
	_, err = svc.design.PutWave(as(ctx, "carol", 0), wave(1, 1), grpc.Header(&md))
	require.NoError(t, err)

	evs := e.designEvents(t, "acme")
	require.Len(t, evs, seeded+2, "one event per change, none for a write that changes nothing")
	for i := 1; i < len(evs); i++ {
		require.Equal(t, evs[i-1].GetNewRevision(), evs[i].GetOldRevision(), "each change replaces the revision before it")
	}
	require.Zero(t, evs[0].GetOldRevision(), "the first change created the document")

	upd := evs[seeded]
	require.Equal(t, "acme", upd.GetTenant())
	require.Equal(t, "alice@provider", upd.GetActor())
	require.Equal(t, "CAB-1234: later window", upd.GetReason())
	require.Equal(t, rev, upd.GetNewRevision())
	require.Empty(t, upd.GetServiceRequestId())
	require.Equal(t, t0, upd.GetChangedAt().AsTime())
	require.Len(t, upd.GetChanges(), 1)
	c := upd.GetChanges()[0]
	require.Equal(t, "wave", c.GetKind())
	require.Equal(t, "waves/2", c.GetResource())
	require.Equal(t, typesv1.ChangeAction_CHANGE_ACTION_UPDATED, c.GetAction())
	require.Equal(t, "02:00", c.GetBefore().GetFields()["schedule"].GetStructValue().GetFields()["startTime"].GetStringValue())
	require.Equal(t, "03:00", c.GetAfter().GetFields()["schedule"].GetStructValue().GetFields()["startTime"].GetStringValue())
	stored := e.stored(t, "patch.acme.design.changed")
	require.Equal(t, "corr-77", stored[seeded].CorrelationID, "the caller's correlation id is the event's")

	del := evs[seeded+1]
	require.Equal(t, "bob@provider", del.GetActor())
	require.Equal(t, typesv1.ChangeAction_CHANGE_ACTION_DELETED, del.GetChanges()[0].GetAction())
	require.Nil(t, del.GetChanges()[0].GetAfter())

	// A write without an identity is refused, and audited nowhere.
	_, err = svc.design.PutWave(metadata.AppendToOutgoingContext(ctx, auth.MetadataSubject, ""), wave(1, 3))
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Len(t, e.designEvents(t, "acme"), seeded+2)

	// Provider-wide freezes are audited as tenant "provider".
	_, err = svc.design.CreateFreeze(as(ctx, "ops", 0), &designv1.CreateFreezeRequest{Reason: "data centre move", Freeze: &typesv1.Freeze{
		Id: "dc-move", Start: timestamppb.New(t0), End: timestamppb.New(t0.Add(48 * time.Hour)),
	}})
	require.NoError(t, err)
	global := e.designEvents(t, libdesign.ProviderTenant)
	require.Len(t, global, 1)
	require.Equal(t, "freezes/dc-move", global[0].GetChanges()[0].GetResource())
	_, err = svc.design.PutTenant(as(ctx, "ops", 0), &designv1.PutTenantRequest{Tenant: "provider", Settings: &typesv1.Tenant{DisplayName: "x"}})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "provider is no customer tenant")
}

func TestAServiceRequestRaisedByATenantAdminIsAppliedByAnOperator(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	var ticks atomic.Int64
	e.clock = func() time.Time { return t0.Add(time.Duration(ticks.Add(1)) * time.Second) }
	svc := e.start(t, store.NewMemory())
	xmas := &typesv1.Freeze{Id: "xmas", Name: "Christmas", Start: timestamppb.New(time.Date(2027, 12, 20, 0, 0, 0, 0, time.UTC)),
		End: timestamppb.New(time.Date(2028, 1, 3, 0, 0, 0, 0, time.UTC))}
	ops := []*typesv1.Operation{
		{Kind: &typesv1.Operation_PutWave{PutWave: wave(2, 6).GetDefinition()}},
		{Kind: &typesv1.Operation_AddFreeze{AddFreeze: xmas}},
	}
	ops[0].GetPutWave().Number = 2
	raised, err := svc.design.CreateServiceRequest(as(ctx, "dana@acme", 0), &designv1.CreateServiceRequestRequest{
		Tenant: "acme", Reason: "Our release freeze and a later wave 2", Operations: ops})
	require.NoError(t, err)
	sr := raised.GetServiceRequest()
	require.Equal(t, typesv1.ServiceRequestState_SERVICE_REQUEST_STATE_OPEN, sr.GetState())
	require.Equal(t, "dana@acme", sr.GetRaisedBy())
	designBefore := len(e.designEvents(t, "acme"))

	list, err := svc.design.ListServiceRequests(ctx, &designv1.ListServiceRequestsRequest{Tenant: "acme", State: typesv1.ServiceRequestState_SERVICE_REQUEST_STATE_OPEN})
	require.NoError(t, err)
	require.Len(t, list.GetServiceRequests(), 1, "the raiser lists it at once")

	applied, err := svc.design.ApplyServiceRequest(as(ctx, "omar@provider", 0), &designv1.ApplyServiceRequestRequest{Tenant: "acme", RequestId: sr.GetRequestId()})
	require.NoError(t, err)
	a := applied.GetServiceRequest()
	require.Equal(t, typesv1.ServiceRequestState_SERVICE_REQUEST_STATE_APPLIED, a.GetState())
	require.Equal(t, "omar@provider", a.GetClosedBy())
	require.NotZero(t, a.GetAppliedRevision())

	again, err := svc.design.ApplyServiceRequest(as(ctx, "omar@provider", 0), &designv1.ApplyServiceRequestRequest{Tenant: "acme", RequestId: sr.GetRequestId()})
	require.NoError(t, err, "applying twice applies once")
	require.Equal(t, a.GetAppliedRevision(), again.GetServiceRequest().GetAppliedRevision())

	// Who, what and when, in the events.
	changes := e.designEvents(t, "acme")
	require.Len(t, changes, designBefore+1, "one design change for the request, even applied twice")
	dc := changes[designBefore]
	require.Equal(t, sr.GetRequestId(), dc.GetServiceRequestId())
	require.Equal(t, "omar@provider", dc.GetActor())
	require.Equal(t, "Our release freeze and a later wave 2", dc.GetReason())
	require.Equal(t, a.GetAppliedRevision(), dc.GetNewRevision())
	var resources []string
	for _, c := range dc.GetChanges() {
		resources = append(resources, c.GetResource())
	}
	require.Equal(t, []string{"waves/2", "freezes/xmas"}, resources)

	reqEvents := e.stored(t, "patch.acme.service_request.>")
	require.Len(t, reqEvents, 2)
	r := reqEvents[0].Data.(*eventsv1.ServiceRequestRaised)
	require.Equal(t, "dana@acme", r.GetRaisedBy())
	require.Len(t, r.GetOperations(), 2, "the raised event carries what was asked")
	require.Equal(t, sr.GetRaiseTime().AsTime(), r.GetRaisedAt().AsTime())
	ap := reqEvents[1].Data.(*eventsv1.ServiceRequestApplied)
	require.Equal(t, "omar@provider", ap.GetAppliedBy())
	require.Equal(t, dc.GetNewRevision(), ap.GetDesignRevision(), "the applied event links the design change")
	require.Equal(t, "patch.acme.service_request.applied/"+sr.GetRequestId(), reqEvents[1].ID)

	// The freeze is in the design now.
	got, err := svc.design.GetFreeze(ctx, &designv1.GetFreezeRequest{Tenant: "acme", FreezeId: "xmas"})
	require.NoError(t, err)
	require.Equal(t, "Christmas", got.GetFreeze().GetName())

	// A request that no longer applies is refused at apply, and stays open.
	stale, err := svc.design.CreateServiceRequest(as(ctx, "dana@acme", 0), &designv1.CreateServiceRequestRequest{
		Tenant: "acme", Reason: "drop the freeze", Operations: []*typesv1.Operation{{Kind: &typesv1.Operation_DeleteFreeze{DeleteFreeze: "xmas"}}}})
	require.NoError(t, err)
	_, err = svc.design.DeleteFreeze(as(ctx, "omar@provider", 0), &designv1.DeleteFreezeRequest{Tenant: "acme", FreezeId: "xmas"})
	require.NoError(t, err)
	_, err = svc.design.ApplyServiceRequest(as(ctx, "omar@provider", 0), &designv1.ApplyServiceRequestRequest{Tenant: "acme", RequestId: stale.GetServiceRequest().GetRequestId()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "no longer applies")
	require.Contains(t, status.Convert(err).Message(), `freeze "xmas" does not exist`)
	still, err := svc.design.GetServiceRequest(ctx, &designv1.GetServiceRequestRequest{Tenant: "acme", RequestId: stale.GetServiceRequest().GetRequestId()})
	require.NoError(t, err)
	require.Equal(t, typesv1.ServiceRequestState_SERVICE_REQUEST_STATE_OPEN, still.GetServiceRequest().GetState())

	// Only the raiser withdraws; an operator rejects with a reason; then it is closed.
	_, err = svc.design.WithdrawServiceRequest(as(ctx, "mallory", 0), &designv1.WithdrawServiceRequestRequest{Tenant: "acme", RequestId: still.GetServiceRequest().GetRequestId()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	rejected, err := svc.design.RejectServiceRequest(as(ctx, "omar@provider", 0), &designv1.RejectServiceRequestRequest{
		Tenant: "acme", RequestId: still.GetServiceRequest().GetRequestId(), Reason: "the freeze is gone already"})
	require.NoError(t, err)
	require.Equal(t, "the freeze is gone already", rejected.GetServiceRequest().GetCloseReason())
	_, err = svc.design.ApplyServiceRequest(as(ctx, "omar@provider", 0), &designv1.ApplyServiceRequestRequest{Tenant: "acme", RequestId: still.GetServiceRequest().GetRequestId()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "is REJECTED, so it can no longer be applied")
	rj := e.stored(t, "patch.acme.service_request.rejected")
	require.Len(t, rj, 1)
	require.Equal(t, "omar@provider", rj[0].Data.(*eventsv1.ServiceRequestRejected).GetRejectedBy())

	withdrawn, err := svc.design.CreateServiceRequest(as(ctx, "dana@acme", 0), &designv1.CreateServiceRequestRequest{
		Tenant: "acme", Reason: "pause wave 1", Operations: []*typesv1.Operation{{Kind: &typesv1.Operation_DeleteWave{DeleteWave: 1}}}})
	require.NoError(t, err)
	_, err = svc.design.WithdrawServiceRequest(as(ctx, "dana@acme", 0), &designv1.WithdrawServiceRequestRequest{Tenant: "acme", RequestId: withdrawn.GetServiceRequest().GetRequestId()})
	require.NoError(t, err)
	require.Len(t, e.stored(t, "patch.acme.service_request.withdrawn"), 1)

	// The list, newest first, filtered and paginated.
	all, err := svc.design.ListServiceRequests(ctx, &designv1.ListServiceRequestsRequest{Tenant: "acme", PageSize: 2})
	require.NoError(t, err)
	require.Len(t, all.GetServiceRequests(), 2)
	require.NotEmpty(t, all.GetNextPageToken())
	rest, err := svc.design.ListServiceRequests(ctx, &designv1.ListServiceRequestsRequest{Tenant: "acme", PageSize: 2, PageToken: all.GetNextPageToken()})
	require.NoError(t, err)
	require.Len(t, rest.GetServiceRequests(), 1)
	require.Empty(t, rest.GetNextPageToken())
	require.Equal(t, sr.GetRequestId(), rest.GetServiceRequests()[0].GetRequestId(), "the oldest comes last")

	// A request that does not apply now is refused when it is raised, naming the operation.
	_, err = svc.design.CreateServiceRequest(as(ctx, "dana@acme", 0), &designv1.CreateServiceRequestRequest{
		Tenant: "acme", Reason: "wave 7", Operations: []*typesv1.Operation{{Kind: &typesv1.Operation_PutWave{PutWave: &typesv1.Wave{Number: 7, Schedule: wave(1, 1).GetDefinition().GetSchedule()}}}}})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "operations[0].putWave.number: must be from 1 to 3")
	_, err = svc.design.CreateServiceRequest(as(ctx, "dana@acme", 0), &designv1.CreateServiceRequestRequest{Tenant: "nobody", Reason: "x",
		Operations: []*typesv1.Operation{{Kind: &typesv1.Operation_DeleteWave{DeleteWave: 1}}}})
	require.Equal(t, codes.NotFound, status.Code(err))
}

func TestTheWatchedViewSeesChangesAndGivesTheAccounts(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	e.policy = nil
	svc := e.start(t, store.NewMemory())
	view, err := libdesign.NewView(libdesign.ViewConfig{JetStream: e.nats.JetStream(t)})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- view.Run(runCtx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	require.NoError(t, view.WaitReady(ctx))
	_, ok := view.Wave("acme", 1)
	require.True(t, ok, "the initial values are loaded")
	_, err = view.Accounts(ctx, "acme")
	require.ErrorIs(t, err, provider.ErrNotFound, "a tenant without accounts")

	_, err = svc.design.PutAccount(as(ctx, "ops", 0), &designv1.PutAccountRequest{Tenant: "acme", AccountId: "123456789012", Account: &typesv1.CloudAccount{
		RoleArn: "arn:aws:iam::123456789012:role/PatchwaveAccess", ExternalId: "acme-ext", Regions: []string{"eu-central-1", "eu-west-1"},
	}})
	require.NoError(t, err)
	_, err = svc.design.PutWave(as(ctx, "ops", 0), wave(1, 8))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		w, ok := view.Wave("acme", 1)
		return ok && w.GetSchedule().GetOffsetDays() == 8
	}, 10*time.Second, 10*time.Millisecond, "the view follows the KV")
	accs, err := view.Accounts(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, []provider.Account{{Provider: "aws", ID: "123456789012", RoleARN: "arn:aws:iam::123456789012:role/PatchwaveAccess",
		ExternalID: "acme-ext", Regions: []string{"eu-central-1", "eu-west-1"}}}, accs)
	_, err = view.Accounts(ctx, "nobody")
	require.ErrorIs(t, err, provider.ErrNotFound)

	_, err = svc.design.DeleteTenant(as(ctx, "ops", 0), &designv1.DeleteTenantRequest{Tenant: "empty"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, ok := view.Tenant("empty"); return !ok }, 10*time.Second, 10*time.Millisecond, "a deleted tenant is gone")
	_, err = svc.design.GetTenant(ctx, &designv1.GetTenantRequest{Tenant: "empty"})
	require.Equal(t, codes.NotFound, status.Code(err))
}

// TestAMissingAuditEventIsPublishedWhenTheSchedulerRunsAgain writes a revision the way a
// scheduler that crashed right after its compare-and-set would leave it (stored, with its
// change record, but no event), then starts the scheduler: the audit relay publishes it, and
// every revision has exactly one event.
func TestAMissingAuditEventIsPublishedWhenTheSchedulerRunsAgain(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t)
	e.policy = nil
	svc := e.start(t, store.NewMemory())
	svc.stop()
	before := e.designEvents(t, "acme")

	kv, err := e.js.KeyValue(ctx, libdesign.Bucket)
	require.NoError(t, err)
	entry, err := kv.Get(ctx, libdesign.TenantKey("acme"))
	require.NoError(t, err)
	doc, err := libdesign.DecodeTenant(entry.Value())
	require.NoError(t, err)
	doc.Tenant.DisplayName = "Acme (renamed before a crash)"
	doc.LastChange = &typesv1.DesignChange{Actor: "crashed-writer", Reason: "rename", Time: timestamppb.New(t0), OldRevision: entry.Revision(),
		Changes: []*typesv1.ResourceChange{{Kind: "tenant", Resource: "tenant", Action: typesv1.ChangeAction_CHANGE_ACTION_UPDATED}}}
	b, err := libdesign.Marshal(doc)
	require.NoError(t, err)
	lost, err := kv.Update(ctx, libdesign.TenantKey("acme"), b, entry.Revision())
	require.NoError(t, err)
	require.Len(t, e.designEvents(t, "acme"), len(before), "nothing published the change")

	svc = e.start(t, store.NewMemory())
	require.Eventually(t, func() bool { return len(e.designEvents(t, "acme")) == len(before)+1 }, 10*time.Second, 20*time.Millisecond)
	evs := e.designEvents(t, "acme")
	repaired := evs[len(evs)-1]
	require.Equal(t, lost, repaired.GetNewRevision())
	require.Equal(t, entry.Revision(), repaired.GetOldRevision())
	require.Equal(t, "crashed-writer", repaired.GetActor())

	// Restarting again publishes nothing twice: one event per revision.
	svc.stop()
	svc = e.start(t, store.NewMemory())
	_, err = svc.design.PutWave(as(ctx, "ops", 0), wave(1, 3))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(e.designEvents(t, "acme")) == len(before)+2 }, 10*time.Second, 20*time.Millisecond)
	c, err := e.js.Consumer(ctx, "KV_"+libdesign.Bucket, "scheduler_design_audit")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, 10*time.Second, 20*time.Millisecond, "the relay has handled every revision")
	seen := map[uint64]bool{}
	for _, ev := range e.designEvents(t, "acme") {
		require.False(t, seen[ev.GetNewRevision()], "revision %d has one event", ev.GetNewRevision())
		seen[ev.GetNewRevision()] = true
	}
	hist, err := kv.History(ctx, libdesign.TenantKey("acme"))
	require.NoError(t, err)
	require.Len(t, hist, len(seen), "as many events as revisions")
	for _, h := range hist {
		require.True(t, seen[h.Revision()], "revision %d has its event", h.Revision())
	}
}
