package demo

import (
	"context"
	"fmt"
	"net/url"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Account is the cloud account the demo tenant's design lists.
type Account struct {
	// ID is the 12-digit account id. Optional, default 111111111111.
	ID string
	// RoleARN is the role to assume. Optional, default arn:aws:iam::<ID>:role/PatchwaveAccess.
	RoleARN string
	// ExternalID is the role's external id. Optional, default "patchwave-demo".
	ExternalID string
	// Region of the instances. Optional, default eu-central-1.
	Region string
}

func (a *Account) setDefaults() {
	if a.ID == "" {
		a.ID = "111111111111"
	}
	if a.RoleARN == "" {
		a.RoleARN = "arn:aws:iam::" + a.ID + ":role/PatchwaveAccess"
	}
	if a.ExternalID == "" {
		a.ExternalID = "patchwave-demo"
	}
	if a.Region == "" {
		a.Region = "eu-central-1"
	}
}

// seed puts the demo tenant's service design through the REST API, as an operator would:
// the tenant, its cloud account, one wave per demo wave (each a few days after Patch Tuesday,
// 02:00-06:00 Berlin time) and a year-end change freeze. Every call is a PUT of the whole
// resource, so a second seed (a restarted demo) changes nothing and audits nothing.
func (c client) seed(ctx context.Context) error {
	t := "/v1/tenants/" + url.PathEscape(c.cfg.Tenant)
	acct := c.cfg.Account
	acct.setDefaults()
	type step struct {
		path      string
		body, out proto.Message
	}
	steps := []step{
		{t, &typesv1.Tenant{DisplayName: "Demo tenant " + c.cfg.Tenant, WaveLimit: int32(max(3, c.cfg.Waves))}, &designv1.PutTenantResponse{}},
		{t + "/accounts/" + acct.ID, &typesv1.CloudAccount{
			Provider: "aws", RoleArn: acct.RoleARN, ExternalId: acct.ExternalID, Regions: []string{acct.Region},
		}, &designv1.PutAccountResponse{}},
	}
	for w := 1; w <= c.cfg.Waves; w++ {
		// A quarter of the wave patched at once; the run halts if half of it fails.
		policy := &typesv1.RolloutPolicy{
			Cutoff: "30m", AutoRollback: w > 1,
			MaxConcurrency: &typesv1.Amount{Value: &typesv1.Amount_Percent{Percent: 25}},
			ErrorBudget:    &typesv1.Amount{Value: &typesv1.Amount_Percent{Percent: 50}},
		}
		if c.cfg.Policy != nil {
			policy = c.cfg.Policy(w)
		}
		steps = append(steps, step{fmt.Sprintf("%s/waves/%d", t, w), &typesv1.Wave{
			Name: fmt.Sprintf("Wave %d", w),
			Schedule: &typesv1.Schedule{
				WeekOfMonth: 2, DayOfWeek: "TUESDAY", OffsetDays: int32(2 * w), StartTime: "02:00", EndTime: "06:00",
				TimeZone: "Europe/Berlin",
			},
			Policy: policy,
		}, &designv1.PutWaveResponse{}})
	}
	steps = append(steps, step{t + "/freezes/year-end", &typesv1.Freeze{
		Name: "Year-end change freeze", Policy: typesv1.FreezePolicy_FREEZE_POLICY_DEFER, DeferDays: 14,
		Rrule: "FREQ=YEARLY", DtStart: "2026-12-20T00:00", TimeZone: "Europe/Berlin", Days: 14,
	}, &designv1.PutFreezeResponse{}})
	for _, s := range steps {
		body, err := protojson.Marshal(s.body)
		if err != nil {
			return err
		}
		if err := c.do(ctx, "PUT", s.path+"?reason="+url.QueryEscape("patchd demo seed"), string(body), s.out); err != nil {
			return fmt.Errorf("seed the service design: PUT %s: %w", s.path, err)
		}
	}
	return nil
}
