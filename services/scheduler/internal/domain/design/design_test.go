package design_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

var now = time.Date(2027, 1, 4, 9, 0, 0, 0, time.UTC)

func change() design.Change { return design.Change{Tenant: "acme", Now: now, Actor: "alice"} }

func op[T any](kind T) *typesv1.Operation {
	o := &typesv1.Operation{}
	switch k := any(kind).(type) {
	case *typesv1.Tenant:
		o.Kind = &typesv1.Operation_PutTenant{PutTenant: k}
	case *typesv1.CloudAccount:
		o.Kind = &typesv1.Operation_PutAccount{PutAccount: k}
	case *typesv1.Wave:
		o.Kind = &typesv1.Operation_PutWave{PutWave: k}
	case *typesv1.Freeze:
		o.Kind = &typesv1.Operation_PutFreeze{PutFreeze: k}
	case *typesv1.Override:
		o.Kind = &typesv1.Operation_PutOverride{PutOverride: k}
	case *typesv1.IcsImport:
		o.Kind = &typesv1.Operation_ImportIcs{ImportIcs: k}
	default:
		panic(fmt.Sprintf("op of %T", kind))
	}
	return o
}

func schedule() *typesv1.Schedule {
	return &typesv1.Schedule{WeekOfMonth: 2, DayOfWeek: "TUESDAY", OffsetDays: 4, StartTime: "02:00", EndTime: "06:00", TimeZone: "Europe/Berlin"}
}

func account() *typesv1.CloudAccount {
	return &typesv1.CloudAccount{AccountId: "111111111111", RoleArn: "arn:aws:iam::111111111111:role/Patchwave", ExternalId: "x-1", Regions: []string{"eu-central-1"}}
}

// base is a tenant with one account, waves 1 and 2 and one freeze.
func base(t *testing.T) *typesv1.TenantDesign {
	t.Helper()
	doc, err := design.ApplyTenant(nil, []*typesv1.Operation{
		op(&typesv1.Tenant{DisplayName: "Acme"}),
		op(account()),
		op(&typesv1.Wave{Number: 1, Schedule: schedule()}),
		op(&typesv1.Wave{Number: 2, Name: "second", Schedule: schedule(), Policy: &typesv1.RolloutPolicy{Cutoff: "1h"}}),
		op(&typesv1.Freeze{Id: "xmas", Start: timestamppb.New(time.Date(2027, 12, 20, 0, 0, 0, 0, time.UTC)), End: timestamppb.New(time.Date(2028, 1, 3, 0, 0, 0, 0, time.UTC))}),
	}, change())
	require.NoError(t, err)
	return doc
}

// violation asserts that err is a validation error naming field with a rule containing rule.
func violation(t *testing.T, err error, field, rule string) {
	t.Helper()
	require.ErrorIs(t, err, apierr.ErrInvalidArgument)
	var verr *apierr.ValidationError
	require.ErrorAs(t, err, &verr)
	for _, v := range verr.Violations {
		if v.Field == field {
			require.Contains(t, v.Rule, rule, "the rule of %s", field)
			return
		}
	}
	require.Failf(t, "no violation of the field", "want %s (%q), got %v", field, rule, verr.Violations)
}

func TestApplyTenantRefusesBadInputNamingTheFieldAndTheRule(t *testing.T) {
	withSchedule := func(f func(s *typesv1.Schedule)) *typesv1.Operation {
		s := schedule()
		f(s)
		return op(&typesv1.Wave{Number: 1, Schedule: s})
	}
	withPolicy := func(p *typesv1.RolloutPolicy) *typesv1.Operation {
		return op(&typesv1.Wave{Number: 1, Schedule: schedule(), Policy: p})
	}
	withAccount := func(f func(a *typesv1.CloudAccount)) *typesv1.Operation {
		a := account()
		f(a)
		return op(a)
	}
	oneOff := func(id string, start, end time.Time) *typesv1.Freeze {
		return &typesv1.Freeze{Id: id, Start: timestamppb.New(start), End: timestamppb.New(end)}
	}
	jan := time.Date(2027, 1, 10, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		op    *typesv1.Operation
		field string
		rule  string
	}{
		{"a tenant without a display name", op(&typesv1.Tenant{}), "displayName", "is required"},
		{"a wave limit of 11", op(&typesv1.Tenant{DisplayName: "A", WaveLimit: 11}), "waveLimit", "must be from 1 to 10 waves, got 11"},
		{"a wave limit below the highest wave", op(&typesv1.Tenant{DisplayName: "A", WaveLimit: 1}), "waveLimit", "must be at least 2, the highest defined wave"},
		{"a wave tag key in the aws: namespace", op(&typesv1.Tenant{DisplayName: "A", WaveTagKey: "aws:wave"}), "waveTagKey", "not starting with \"aws:\""},
		{"a wave tag key of 129 characters", op(&typesv1.Tenant{DisplayName: "A", WaveTagKey: strings.Repeat("k", 129)}), "waveTagKey", "1-128"},
		{"another tenant's id in the body", op(&typesv1.Tenant{TenantId: "globex", DisplayName: "A"}), "tenantId", "must be empty or the tenant of the path"},
		{"a default policy whose cutoff does not fit a wave's window", op(&typesv1.Tenant{DisplayName: "A", DefaultPolicy: &typesv1.RolloutPolicy{Cutoff: "4h"}}),
			"defaultPolicy.cutoff", "must be shorter than the window (4h), got 4h (wave 1 runs under the default policy)"},

		{"an account id of 5 digits", withAccount(func(a *typesv1.CloudAccount) { a.AccountId = "12345" }), "accountId", "must be a 12-digit AWS account id"},
		{"a role ARN that is not one", withAccount(func(a *typesv1.CloudAccount) { a.RoleArn = "role/Patchwave" }), "roleArn", "must be an IAM role ARN"},
		{"a role of another account", withAccount(func(a *typesv1.CloudAccount) { a.RoleArn = "arn:aws:iam::222222222222:role/P" }), "roleArn", "must be a role of account 111111111111"},
		{"an account without regions", withAccount(func(a *typesv1.CloudAccount) { a.Regions = nil }), "regions", "must name at least one region"},
		{"a region that is not one", withAccount(func(a *typesv1.CloudAccount) { a.Regions = []string{"Frankfurt"} }), "regions[0]", "must be a region such as eu-central-1"},
		{"a region twice", withAccount(func(a *typesv1.CloudAccount) { a.Regions = []string{"eu-west-1", "eu-west-1"} }), "regions[1]", "duplicate region"},
		{"another cloud", withAccount(func(a *typesv1.CloudAccount) { a.Provider = "gcp" }), "provider", "must be \"aws\""},
		{"an external id of one character", withAccount(func(a *typesv1.CloudAccount) { a.ExternalId = "x" }), "externalId", "2-1224"},

		{"wave 0", op(&typesv1.Wave{Number: 0, Schedule: schedule()}), "number", "must be from 1 to 3 (the tenant's wave limit), got 0"},
		{"a wave above the tenant's limit", op(&typesv1.Wave{Number: 4, Schedule: schedule()}), "number", "must be from 1 to 3 (the tenant's wave limit), got 4"},
		{"a wave without a schedule", op(&typesv1.Wave{Number: 1}), "schedule", "is required"},
		{"a duplicate wave: another wave's name", op(&typesv1.Wave{Number: 1, Name: "second", Schedule: schedule()}), "name", "wave 2 is already named \"second\""},
		{"week 0", withSchedule(func(s *typesv1.Schedule) { s.WeekOfMonth = 0 }), "schedule.weekOfMonth", "must be 1, 2, 3, 4 or -1 (last), got 0"},
		{"week 5", withSchedule(func(s *typesv1.Schedule) { s.WeekOfMonth = 5 }), "schedule.weekOfMonth", "got 5"},
		{"offset 31", withSchedule(func(s *typesv1.Schedule) { s.OffsetDays = 31 }), "schedule.offsetDays", "must be from -30 to +30 days, got 31"},
		{"offset -31", withSchedule(func(s *typesv1.Schedule) { s.OffsetDays = -31 }), "schedule.offsetDays", "got -31"},
		{"a start at 25:00", withSchedule(func(s *typesv1.Schedule) { s.StartTime = "25:00" }), "schedule.startTime", "HH:MM from 00:00 to 23:59, got \"25:00\""},
		{"an end at 24:00", withSchedule(func(s *typesv1.Schedule) { s.EndTime = "24:00" }), "schedule.endTime", "got \"24:00\""},
		{"a window over 24 hours", withSchedule(func(s *typesv1.Schedule) { s.EndTime, s.Duration = "", "25h" }), "schedule.duration", "a window lasts from 1m to 24h"},
		{"an end time and a duration", withSchedule(func(s *typesv1.Schedule) { s.Duration = "4h" }), "schedule.duration", "not both"},
		{"no end", withSchedule(func(s *typesv1.Schedule) { s.EndTime = "" }), "schedule.endTime", "is required"},
		{"an unknown time zone", withSchedule(func(s *typesv1.Schedule) { s.TimeZone = "Mars/Olympus" }), "schedule.timeZone", "must be an IANA time zone name"},
		{"a day that is not one", withSchedule(func(s *typesv1.Schedule) { s.DayOfWeek = "FUNDAY" }), "schedule.dayOfWeek", "must be MONDAY, TUESDAY"},
		{"validity that ends before it starts", withSchedule(func(s *typesv1.Schedule) { s.ValidFrom, s.ValidUntil = "2027-06-01", "2027-01-01" }), "schedule.validUntil", "must not be before validFrom"},
		{"a skipped key that is not one", op(&typesv1.Wave{Number: 1, Schedule: schedule(), SkipKeys: []string{"2027-13"}}), "skipKeys[0]", "must be an occurrence key YYYY-MM"},

		{"a cutoff as long as the window", withPolicy(&typesv1.RolloutPolicy{Cutoff: "4h"}), "policy.cutoff", "must be shorter than the window (4h), got 4h"},
		{"a cutoff that is not a duration", withPolicy(&typesv1.RolloutPolicy{Cutoff: "soon"}), "policy.cutoff", "must be a duration"},
		{"a cutoff of seconds", withPolicy(&typesv1.RolloutPolicy{Cutoff: "90s"}), "policy.cutoff", "whole number of minutes"},
		{"a timeout longer than the window", withPolicy(&typesv1.RolloutPolicy{InstanceTimeout: "5h"}), "policy.instanceTimeout", "must be no longer than the window (4h), got 5h"},
		{"a timeout under a minute", withPolicy(&typesv1.RolloutPolicy{InstanceTimeout: "0s"}), "policy.instanceTimeout", "must be at least 1m"},
		{"a concurrency of 0%", withPolicy(&typesv1.RolloutPolicy{MaxConcurrency: design.Percent(0)}), "policy.maxConcurrency.percent", "must be a percentage from 1 to 100, got 0"},
		{"a concurrency of 101%", withPolicy(&typesv1.RolloutPolicy{MaxConcurrency: design.Percent(101)}), "policy.maxConcurrency.percent", "got 101"},
		{"a concurrency of 0 instances", withPolicy(&typesv1.RolloutPolicy{MaxConcurrency: design.Count(0)}), "policy.maxConcurrency.count", "must be from 1 to 100000 instances, got 0"},
		{"an error budget of -1", withPolicy(&typesv1.RolloutPolicy{ErrorBudget: design.Count(-1)}), "policy.errorBudget.count", "must be from 0 to 100000"},
		{"an error budget of 101%", withPolicy(&typesv1.RolloutPolicy{ErrorBudget: design.Percent(101)}), "policy.errorBudget.percent", "from 1 to 100"},
		{"a success threshold of 101%", withPolicy(&typesv1.RolloutPolicy{SuccessThresholdPercent: 101}), "policy.successThresholdPercent", "from 1 to 100, got 101"},
		{"an unknown reboot policy", withPolicy(&typesv1.RolloutPolicy{RebootPolicy: 9}), "policy.rebootPolicy", "REBOOT_POLICY_IF_REQUIRED"},

		{"a freeze id with a slash", op(oneOff("a/b", jan, jan.Add(time.Hour))), "id", "must be 1-64 lower-case letters"},
		{"a freeze that ends before it starts", op(oneOff("f1", jan, jan.Add(-time.Hour))), "end", "must be after start"},
		{"a deferring freeze without days", op(&typesv1.Freeze{Id: "f1", Policy: typesv1.FreezePolicy_FREEZE_POLICY_DEFER, Start: timestamppb.New(jan), End: timestamppb.New(jan.Add(time.Hour))}),
			"deferDays", "must be from 1 to 30 days with policy defer, got 0"},
		{"a deferral of 31 days", op(&typesv1.Freeze{Id: "f1", Policy: typesv1.FreezePolicy_FREEZE_POLICY_DEFER, DeferDays: 31, Start: timestamppb.New(jan), End: timestamppb.New(jan.Add(time.Hour))}),
			"deferDays", "got 31"},
		{"an RRULE that does not parse", op(&typesv1.Freeze{Id: "f1", Rrule: "FREQ=SOMETIMES", DtStart: "2027-01-02T00:00", TimeZone: "Europe/Berlin", Days: 1}),
			"rrule", "must be an RFC 5545 recurrence rule"},
		{"a recurring freeze in an unknown zone", op(&typesv1.Freeze{Id: "f1", Rrule: "FREQ=WEEKLY", DtStart: "2027-01-02T00:00", TimeZone: "Nowhere/Land", Days: 1}),
			"timeZone", "must be an IANA time zone name"},
		{"a recurring freeze with a bad duration", op(&typesv1.Freeze{Id: "f1", Rrule: "FREQ=WEEKLY", DtStart: "2027-01-02T00:00", TimeZone: "UTC", Duration: "a while"}),
			"duration", "must be a duration such as"},

		{"an override of a wave that is not defined", op(&typesv1.Override{Wave: 3, Key: "2027-01", Reason: "outage"}), "wave", "must be a defined wave of the tenant, got 3"},
		{"an override without a reason", op(&typesv1.Override{Wave: 1, Key: "2027-01"}), "reason", "is required"},
		{"an override of a bad key", op(&typesv1.Override{Wave: 1, Key: "January"}), "key", "must be an occurrence key YYYY-MM"},
		{"an operation of no kind", &typesv1.Operation{}, "", "must set one kind of operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := base(t)
			before := proto.Clone(doc)
			next, err := design.ApplyTenant(doc, []*typesv1.Operation{tt.op}, change())
			require.Nil(t, next)
			violation(t, err, tt.field, tt.rule)
			require.True(t, proto.Equal(before, doc), "the document is not touched")
		})
	}
}

func TestApplyTenantAddsFreezesOnceAndNamesDeletesOfWhatIsNot(t *testing.T) {
	doc := base(t)
	add := &typesv1.Operation{Kind: &typesv1.Operation_AddFreeze{AddFreeze: proto.Clone(doc.GetFreezes()[0]).(*typesv1.Freeze)}}
	_, err := design.ApplyTenant(doc, []*typesv1.Operation{add}, change())
	violation(t, err, "id", "freeze \"xmas\" already exists (PUT replaces it)")

	for _, o := range []*typesv1.Operation{
		{Kind: &typesv1.Operation_DeleteFreeze{DeleteFreeze: "easter"}},
		{Kind: &typesv1.Operation_DeleteWave{DeleteWave: 3}},
		{Kind: &typesv1.Operation_DeleteAccount{DeleteAccount: "999999999999"}},
		{Kind: &typesv1.Operation_DeleteOverride{DeleteOverride: &typesv1.OverrideRef{Wave: 1, Key: "2027-01"}}},
	} {
		_, err := design.ApplyTenant(doc, []*typesv1.Operation{o}, change())
		require.ErrorIs(t, err, apierr.ErrNotFound, design.OpKind(o))
		require.ErrorContains(t, err, "does not exist")
	}
	_, err = design.ApplyTenant(nil, []*typesv1.Operation{op(&typesv1.Wave{Number: 1, Schedule: schedule()})}, change())
	require.ErrorIs(t, err, apierr.ErrNotFound, "only putTenant applies to a tenant that does not exist")
}

func TestApplyTenantInAServiceRequestNamesTheOperation(t *testing.T) {
	doc := base(t)
	bad := schedule()
	bad.WeekOfMonth = 5
	c := change()
	c.Field = design.RequestField
	ops := []*typesv1.Operation{
		op(&typesv1.Wave{Number: 3, Schedule: schedule()}),
		op(&typesv1.Wave{Number: 1, Schedule: bad}),
	}
	_, err := design.ApplyTenant(doc, ops, c)
	violation(t, err, "operations[1].putWave.schedule.weekOfMonth", "got 5")

	_, err = design.ApplyTenant(doc, []*typesv1.Operation{{Kind: &typesv1.Operation_DeleteFreeze{DeleteFreeze: "easter"}}}, c)
	require.ErrorIs(t, err, apierr.ErrNotFound)
	violation(t, design.AsViolation(err), "operations[0].deleteFreeze", "refers to freeze \"easter\", which does not exist")
}

func TestApplyTenantIsAllOrNothing(t *testing.T) {
	doc := base(t)
	before := proto.Clone(doc)
	_, err := design.ApplyTenant(doc, []*typesv1.Operation{
		op(&typesv1.Wave{Number: 3, Schedule: schedule()}),
		op(&typesv1.Wave{Number: 9, Schedule: schedule()}),
	}, change())
	require.Error(t, err)
	require.True(t, proto.Equal(before, doc))

	next, err := design.ApplyTenant(doc, []*typesv1.Operation{
		op(&typesv1.Wave{Number: 3, Schedule: schedule()}),
		{Kind: &typesv1.Operation_DeleteWave{DeleteWave: 1}},
		{Kind: &typesv1.Operation_SetWavePolicy{SetWavePolicy: &typesv1.WavePolicy{Wave: 3, Policy: &typesv1.RolloutPolicy{Cutoff: "15m"}}}},
	}, change())
	require.NoError(t, err)
	var numbers []int32
	for _, w := range next.GetWaves() {
		numbers = append(numbers, w.GetNumber())
	}
	require.Equal(t, []int32{2, 3}, numbers, "applied in order, sorted")
	require.Equal(t, "15m", next.GetWaves()[1].GetPolicy().GetCutoff())
	require.True(t, proto.Equal(before, doc), "the input document is never modified")
}

func TestApplyTenantNormalizes(t *testing.T) {
	doc, err := design.ApplyTenant(nil, []*typesv1.Operation{
		op(&typesv1.Tenant{DisplayName: "Acme"}),
		op(&typesv1.Wave{Number: 2, Schedule: &typesv1.Schedule{WeekOfMonth: -1, DayOfWeek: "friday", StartTime: "22:00", Duration: "6h", TimeZone: "America/New_York"},
			SkipKeys: []string{"2027-03", "2027-02", "2027-03"}, Policy: &typesv1.RolloutPolicy{Cutoff: "90m", MaxConcurrency: design.Count(25)}}),
	}, change())
	require.NoError(t, err)
	tenant := doc.GetTenant()
	require.Equal(t, "acme", tenant.GetTenantId())
	require.Equal(t, "PatchWave", tenant.GetWaveTagKey())
	require.EqualValues(t, 3, tenant.GetWaveLimit())
	require.Equal(t, now, tenant.GetCreateTime().AsTime())
	require.True(t, proto.Equal(&typesv1.RolloutPolicy{
		MaxConcurrency: design.Percent(10), ErrorBudget: design.Percent(5), Cutoff: "0s",
		RebootPolicy: typesv1.RebootPolicy_REBOOT_POLICY_IF_REQUIRED, SuccessThresholdPercent: 95,
	}, tenant.GetDefaultPolicy()), "the default policy is the built-in one: %v", tenant.GetDefaultPolicy())

	w := doc.GetWaves()[0]
	require.Equal(t, "Wave 2", w.GetName())
	require.True(t, proto.Equal(&typesv1.Schedule{WeekOfMonth: -1, DayOfWeek: "FRIDAY", StartTime: "22:00", EndTime: "04:00", TimeZone: "America/New_York"}, w.GetSchedule()),
		"the day in upper case, the duration as the end time: %v", w.GetSchedule())
	require.Equal(t, []string{"2027-02", "2027-03"}, w.GetSkipKeys())
	require.Equal(t, "1h30m", w.GetPolicy().GetCutoff())
	require.EqualValues(t, 25, w.GetPolicy().GetMaxConcurrency().GetCount())
	require.Equal(t, 6*time.Hour, design.Window(w.GetSchedule()))
}

func TestDiffNamesEveryResourceBeforeAndAfter(t *testing.T) {
	doc := base(t)
	created := design.Diff(nil, doc)
	var names []string
	for _, c := range created {
		require.Equal(t, typesv1.ChangeAction_CHANGE_ACTION_CREATED, c.GetAction())
		require.Nil(t, c.GetBefore())
		require.NotNil(t, c.GetAfter())
		names = append(names, c.GetResource())
	}
	require.Equal(t, []string{"tenant", "accounts/111111111111", "waves/1", "waves/2", "freezes/xmas"}, names)

	require.Empty(t, design.Diff(doc, doc), "no change, no diff")
	same, err := design.ApplyTenant(doc, []*typesv1.Operation{op(&typesv1.Wave{Number: 1, Schedule: schedule()})}, change())
	require.NoError(t, err)
	require.Empty(t, design.Diff(doc, same), "putting what is there changes nothing")

	paused := &typesv1.Wave{Number: 1, Schedule: schedule(), Paused: true}
	next, err := design.ApplyTenant(doc, []*typesv1.Operation{op(paused), {Kind: &typesv1.Operation_DeleteFreeze{DeleteFreeze: "xmas"}}}, change())
	require.NoError(t, err)
	changes := design.Diff(doc, next)
	require.Len(t, changes, 2)
	require.Equal(t, "waves/1", changes[0].GetResource())
	require.Equal(t, typesv1.ChangeAction_CHANGE_ACTION_UPDATED, changes[0].GetAction())
	require.False(t, changes[0].GetBefore().GetFields()["paused"].GetBoolValue())
	require.True(t, changes[0].GetAfter().GetFields()["paused"].GetBoolValue())
	require.Equal(t, "TUESDAY", changes[0].GetAfter().GetFields()["schedule"].GetStructValue().GetFields()["dayOfWeek"].GetStringValue())
	require.Equal(t, "freezes/xmas", changes[1].GetResource())
	require.Equal(t, typesv1.ChangeAction_CHANGE_ACTION_DELETED, changes[1].GetAction())
	require.Nil(t, changes[1].GetAfter())

	deleted := design.Diff(doc, design.DeleteTenant("acme"))
	require.Len(t, deleted, 5)
	for _, c := range deleted {
		require.Equal(t, typesv1.ChangeAction_CHANGE_ACTION_DELETED, c.GetAction(), c.GetResource())
	}
	require.False(t, design.Exists(design.DeleteTenant("acme")), "a tombstone is no tenant")
}

func TestApplyGlobalTakesOnlyFreezes(t *testing.T) {
	jan := time.Date(2027, 1, 10, 0, 0, 0, 0, time.UTC)
	g, err := design.ApplyGlobal(nil, []*typesv1.Operation{op(&typesv1.Freeze{Id: "dc-move", Start: timestamppb.New(jan), End: timestamppb.New(jan.Add(48 * time.Hour))})}, change())
	require.NoError(t, err)
	require.Len(t, g.GetFreezes(), 1)
	require.Equal(t, "api", g.GetFreezes()[0].GetSource())
	require.Len(t, design.DiffGlobal(nil, g), 1)
	_, err = design.ApplyGlobal(g, []*typesv1.Operation{op(&typesv1.Wave{Number: 1, Schedule: schedule()})}, change())
	violation(t, err, "", "only addFreeze, putFreeze, deleteFreeze and importIcs apply to the provider-wide freezes")
	require.True(t, design.FreezeOnly([]*typesv1.Operation{op(&typesv1.Freeze{})}))
	require.False(t, design.FreezeOnly([]*typesv1.Operation{op(&typesv1.Wave{})}))
}

const weeklyICS = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" +
	"BEGIN:VEVENT\r\nUID:Weekend-Freeze@Example.com\r\nSUMMARY:Weekend freeze\r\n" +
	"DTSTART;TZID=Europe/Berlin:20270102T000000\r\nDTEND;TZID=Europe/Berlin:20270104T000000\r\n" +
	"RRULE:FREQ=WEEKLY;BYDAY=SA\r\nEXDATE;TZID=Europe/Berlin:20270109T000000\r\nEND:VEVENT\r\n" +
	"BEGIN:VEVENT\r\nUID:board-meeting\r\nDTSTART:20270115T080000Z\r\nDTEND:20270115T120000Z\r\nEND:VEVENT\r\n" +
	"END:VCALENDAR\r\n"

func TestImportICS(t *testing.T) {
	imp := &typesv1.IcsImport{Ics: weeklyICS, Policy: typesv1.FreezePolicy_FREEZE_POLICY_DEFER, DeferDays: 3}
	fs, err := design.ICSFreezes("", imp)
	require.NoError(t, err)
	require.Len(t, fs, 2)
	byID := map[string]*typesv1.Freeze{}
	for _, f := range fs {
		byID[f.GetId()] = f
		require.Equal(t, "ics", f.GetSource())
		require.Equal(t, typesv1.FreezePolicy_FREEZE_POLICY_DEFER, f.GetPolicy())
		require.EqualValues(t, 3, f.GetDeferDays())
	}
	require.Contains(t, byID, "board-meeting", "a UID that is a valid id is the id")
	var weekly *typesv1.Freeze
	for id, f := range byID {
		if strings.HasPrefix(id, "weekend-freeze-example.com-") {
			weekly = f
		}
	}
	require.NotNil(t, weekly, "a UID that is not a valid id is cleaned up and hashed: %v", byID)
	again, err := design.ICSFreezes("", imp)
	require.NoError(t, err)
	require.Equal(t, fs[0].GetId(), again[0].GetId(), "ids are the same on every import")
	require.Contains(t, weekly.GetRrule(), "FREQ=WEEKLY")
	require.Equal(t, "Europe/Berlin", weekly.GetTimeZone())
	require.Len(t, weekly.GetExDates(), 1)

	// Imported through the document, twice: the second import changes nothing.
	doc := base(t)
	next, err := design.ApplyTenant(doc, []*typesv1.Operation{op(imp)}, change())
	require.NoError(t, err)
	require.Len(t, next.GetFreezes(), 3)
	twice, err := design.ApplyTenant(next, []*typesv1.Operation{op(imp)}, change())
	require.NoError(t, err)
	require.Empty(t, design.Diff(next, twice))

	tests := []struct {
		name  string
		imp   *typesv1.IcsImport
		field string
		rule  string
	}{
		{"an empty file", &typesv1.IcsImport{}, "ics", "is required"},
		{"a file that is not iCalendar", &typesv1.IcsImport{Ics: "hello\nworld\n"}, "ics", "line 1"},
		{"an event with a broken rule", &typesv1.IcsImport{Ics: strings.Replace(weeklyICS, "FREQ=WEEKLY;BYDAY=SA", "FREQ=FORTNIGHTLY", 1)}, "ics", "line"},
		{"a deferral without days", &typesv1.IcsImport{Ics: weeklyICS, Policy: typesv1.FreezePolicy_FREEZE_POLICY_DEFER}, "deferDays", "must be from 1 to 30 days"},
		{"an unknown zone for floating times", &typesv1.IcsImport{Ics: weeklyICS, TimeZone: "Mars/Olympus"}, "timeZone", "IANA time zone"},
		{"a file over 512 KiB", &typesv1.IcsImport{Ics: strings.Repeat("x", design.MaxICSBytes+1)}, "ics", "at most 512 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := design.ICSFreezes("", tt.imp)
			violation(t, err, tt.field, tt.rule)
		})
	}
}

func TestWaveCalendarCombinesTheWaveTheTenantAndTheProvider(t *testing.T) {
	doc := base(t)
	doc, err := design.ApplyTenant(doc, []*typesv1.Operation{
		op(&typesv1.Override{Wave: 1, Key: "2027-12", Reason: "critical CVE"}),
		op(&typesv1.Override{Wave: 2, Key: "2027-11", Reason: "other wave"}),
	}, change())
	require.NoError(t, err)
	jan := time.Date(2027, 1, 10, 0, 0, 0, 0, time.UTC)
	global, err := design.ApplyGlobal(nil, []*typesv1.Operation{op(&typesv1.Freeze{Id: "xmas", Start: timestamppb.New(jan), End: timestamppb.New(jan.Add(time.Hour))})}, change())
	require.NoError(t, err)
	w := doc.GetWaves()[0]
	w.Paused, w.SkipKeys = true, []string{"2027-02"}
	s, o, err := design.WaveCalendar(doc, global, w)
	require.NoError(t, err)
	require.Equal(t, time.Tuesday, s.DayOfWeek)
	require.True(t, o.Paused)
	require.Equal(t, []string{"2027-02"}, o.SkipKeys)
	require.Equal(t, map[string]string{"2027-12": "critical CVE"}, o.Overrides, "only the wave's own overrides")
	require.Len(t, o.Freezes, 2)
	require.Equal(t, "xmas", o.Freezes[0].ID)
	require.Equal(t, "provider/xmas", o.Freezes[1].ID, "a provider-wide freeze never collides with the tenant's")
}

func TestPreviewInput(t *testing.T) {
	_, o, err := design.PreviewCalendar(schedule(), []*typesv1.Freeze{{Start: timestamppb.New(now), End: timestamppb.New(now.Add(time.Hour))}})
	require.NoError(t, err)
	require.Equal(t, "freeze-1", o.Freezes[0].ID, "a preview's freeze without an id gets one")

	_, _, err = design.PreviewCalendar(nil, nil)
	violation(t, err, "schedule", "is required")
	_, _, err = design.PreviewCalendar(schedule(), []*typesv1.Freeze{{Id: "a", Rrule: "FREQ=WEEKLY", TimeZone: "UTC", Days: 1}})
	violation(t, err, "freezes[0].dtStart", "must be set")
	_, _, err = design.PreviewCalendar(schedule(), []*typesv1.Freeze{
		{Id: "a", Start: timestamppb.New(now), End: timestamppb.New(now.Add(time.Hour))},
		{Id: "a", Start: timestamppb.New(now), End: timestamppb.New(now.Add(time.Hour))},
	})
	violation(t, err, "freezes[1].id", "must be unique")

	for _, c := range []struct {
		count int32
		want  int
		err   bool
	}{{0, 12, false}, {1, 1, false}, {100, 100, false}, {101, 0, true}, {-1, 0, true}} {
		n, err := design.PreviewCount(c.count)
		if c.err {
			violation(t, err, "count", "must be from 1 to 100 occurrences")
			continue
		}
		require.NoError(t, err)
		require.Equal(t, c.want, n)
	}
}

func TestServiceRequestLifecycle(t *testing.T) {
	open, err := design.NewRequest(design.Raise{Tenant: "acme", ID: "sr-20270104T090000Z-a1b2c3", Actor: "tenant-admin", Reason: "move wave 2",
		Operations: []*typesv1.Operation{op(&typesv1.Wave{Number: 2, Schedule: schedule()})}, Now: now, Revision: 7})
	require.NoError(t, err)
	require.Equal(t, design.StateOpen, open.GetState())
	require.EqualValues(t, 7, open.GetRaisedRevision())

	_, err = design.NewRequest(design.Raise{Tenant: "acme", Actor: "a"})
	violation(t, err, "reason", "is required")
	violation(t, err, "operations", "at least one operation")

	closedAs := func(a design.Action) *typesv1.ServiceRequest {
		return design.Close(open, a, "operator", "", now, 0)
	}
	tests := []struct {
		name   string
		req    *typesv1.ServiceRequest
		action design.Action
		actor  string
		reason string
		done   bool
		err    string
	}{
		{"an operator applies an open request", open, design.ActionApply, "operator", "", false, ""},
		{"an operator rejects an open request with a reason", open, design.ActionReject, "operator", "not now", false, ""},
		{"a reject needs a reason", open, design.ActionReject, "operator", "", false, "reason: is required"},
		{"the raiser withdraws an open request", open, design.ActionWithdraw, "tenant-admin", "", false, ""},
		{"someone else cannot withdraw it", open, design.ActionWithdraw, "mallory", "", false, "only they may withdraw it"},
		{"applying an applied request is done already", closedAs(design.ActionApply), design.ActionApply, "operator", "", true, ""},
		{"rejecting a rejected request is done already", closedAs(design.ActionReject), design.ActionReject, "operator", "again", true, ""},
		{"an applied request cannot be rejected", closedAs(design.ActionApply), design.ActionReject, "operator", "late", false, "service request sr-20270104T090000Z-a1b2c3 is APPLIED, so it can no longer be rejected"},
		{"a rejected request cannot be applied", closedAs(design.ActionReject), design.ActionApply, "operator", "", false, "is REJECTED, so it can no longer be applied"},
		{"a withdrawn request cannot be applied", closedAs(design.ActionWithdraw), design.ActionApply, "operator", "", false, "is WITHDRAWN"},
		{"an applied request cannot be withdrawn", closedAs(design.ActionApply), design.ActionWithdraw, "tenant-admin", "", false, "is APPLIED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done, err := design.CheckClose(tt.req, tt.action, tt.actor, tt.reason)
			require.Equal(t, tt.done, done)
			if tt.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.err)
			if !errors.Is(err, apierr.ErrInvalidArgument) {
				require.ErrorIs(t, err, apierr.ErrFailedPrecondition)
			}
		})
	}

	applied := design.Close(open, design.ActionApply, "operator", "", now, 0)
	require.Equal(t, design.StateApplied, applied.GetState())
	require.Equal(t, "operator", applied.GetClosedBy())
	require.EqualValues(t, 41, design.AppliedRevision(applied, 42), "the document revision comes right before the request's")
	require.Zero(t, design.AppliedRevision(open, 42))
	require.Equal(t, design.StateOpen, open.GetState(), "Close copies")

	id, err := design.NewRequestID(now, strings.NewReader("\x01\x02\x03"))
	require.NoError(t, err)
	require.Equal(t, "sr-20270104T090000Z-010203", id)
	require.NoError(t, design.ValidateRequestID("requestId", id))
	violation(t, design.ValidateRequestID("requestId", "sr-1"), "requestId", "must be a service request id")
}

func TestPaginate(t *testing.T) {
	items := []string{"a", "b", "c", "d", "e"}
	key := func(s string) string { return s }
	page, next, err := design.Paginate(items, key, design.Ascending, 2, "", "letters")
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, page)
	require.NotEmpty(t, next)
	page, next2, err := design.Paginate(items, key, design.Ascending, 2, next, "letters")
	require.NoError(t, err)
	require.Equal(t, []string{"c", "d"}, page)
	// "e" is on the last page even when "c" was deleted meanwhile.
	page, last, err := design.Paginate([]string{"a", "b", "d", "e"}, key, design.Ascending, 2, next2, "letters")
	require.NoError(t, err)
	require.Equal(t, []string{"e"}, page)
	require.Empty(t, last, "the last page has no next token")

	desc := []string{"e", "d", "c"}
	page, next, err = design.Paginate(desc, key, design.Descending, 1, "", "desc")
	require.NoError(t, err)
	require.Equal(t, []string{"e"}, page)
	page, _, err = design.Paginate(desc, key, design.Descending, 1, next, "desc")
	require.NoError(t, err)
	require.Equal(t, []string{"d"}, page)

	all, next, err := design.Paginate(items, key, design.Ascending, 0, "", "letters")
	require.NoError(t, err)
	require.Len(t, all, 5, "size 0 is the default size")
	require.Empty(t, next)
	big := make([]string, 600)
	for i := range big {
		big[i] = fmt.Sprintf("%04d", i)
	}
	page, _, err = design.Paginate(big, key, design.Ascending, 10000, "", "big")
	require.NoError(t, err)
	require.Len(t, page, design.MaxPageSize, "a size above the maximum is the maximum")

	_, _, err = design.Paginate(items, key, design.Ascending, -1, "", "letters")
	violation(t, err, "pageSize", "must be from 1 to 500")
	_, _, err = design.Paginate(items, key, design.Ascending, 2, "garbage!", "letters")
	violation(t, err, "pageToken", "must be a nextPageToken this list returned")
	_, _, err = design.Paginate(items, key, design.Ascending, 2, next2, "other-listing")
	violation(t, err, "pageToken", "with the same filter")
}

func TestValidators(t *testing.T) {
	require.NoError(t, design.ValidateTenantID("tenant", "acme-2"))
	violation(t, design.ValidateTenantID("tenant", "provider"), "tenant", "reserved for provider-wide resources")
	violation(t, design.ValidateTenantID("tenant", "Acme"), "tenant", "lower-case")
	violation(t, design.ValidateActor("X-Patchwave-Actor", ""), "X-Patchwave-Actor", "is required: every change names who makes it")
	violation(t, design.ValidateActor("X-Patchwave-Actor", strings.Repeat("a", 129)), "X-Patchwave-Actor", "at most 128")
	violation(t, design.ValidateReason("reason", strings.Repeat("r", 1001), false), "reason", "at most 1000")
	violation(t, design.ValidateFreezeID("freezeId", "X"), "freezeId", "lower-case")
	violation(t, design.ValidateOccurrenceKey("key", "2027-1"), "key", "YYYY-MM")

	stale := &design.StaleError{What: "tenant acme", Expected: 3, Current: 5}
	require.ErrorIs(t, stale, apierr.ErrFailedPrecondition)
	require.EqualError(t, stale, `tenant acme: revision 3 is stale: the current revision is 5 (read it again and retry with If-Match: "5")`)

	for d, want := range map[time.Duration]string{0: "0s", 4 * time.Hour: "4h", 90 * time.Minute: "1h30m", 45 * time.Minute: "45m", 90 * time.Second: "1m30s", -time.Hour: "-1h"} {
		require.Equal(t, want, design.FormatDuration(d))
	}
}

func TestFreezeInstancesNeedAHorizonWhenTheRuleNeverEnds(t *testing.T) {
	weekly := &typesv1.Freeze{Id: "weekend", Rrule: "FREQ=WEEKLY;BYDAY=SA", DtStart: "2027-01-02T00:00", TimeZone: "Europe/Berlin", Days: 2}
	from := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err := design.FreezeInstances(weekly, from, time.Time{})
	violation(t, err, "to", "never ends")
	_, err = design.FreezeInstances(weekly, from, from.Add(-time.Hour))
	violation(t, err, "to", "must be after from")
	ins, err := design.FreezeInstances(weekly, from, from.Add(14*24*time.Hour))
	require.NoError(t, err)
	require.Len(t, ins, 2, "the weekends of 2 and 9 January")
	require.Equal(t, time.Date(2027, 1, 1, 23, 0, 0, 0, time.UTC), ins[0].Start, "Saturday 00:00 in Berlin")
	require.Equal(t, 48*time.Hour, ins[0].End.Sub(ins[0].Start))

	counted := proto.Clone(weekly).(*typesv1.Freeze)
	counted.Rrule = "FREQ=WEEKLY;BYDAY=SA;COUNT=3"
	ins, err = design.FreezeInstances(counted, from, time.Time{})
	require.NoError(t, err, "a rule with COUNT ends: no horizon needed")
	require.Len(t, ins, 3)
}
