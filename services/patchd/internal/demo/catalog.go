package demo

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"

	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog/samplefeeds"
)

// demoFamily is the OS family of the demo baseline (the simulated fleet runs it).
const demoFamily = "amazon-linux-2023"

// catalogFlow is the catalog part of the demo, through the REST API as an operator would do
// it: import the project's sample feeds, certify the security fixes by hand (in test, then
// certified with evidence), let an auto-approval rule certify the bug fix and the
// enhancement, publish the cycle's baseline with its deployment rules, and have the tenant
// approve it. Every step is idempotent, so a resumed demo repeats nothing. It returns the
// baseline every wave then pins.
func (c client) catalogFlow(ctx context.Context) (*catalogv1.Baseline, error) {
	err := fs.WalkDir(samplefeeds.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (path.Ext(p) != ".json" && path.Ext(p) != ".xml") {
			return err
		}
		data, err := fs.ReadFile(samplefeeds.Files, p)
		if err != nil {
			return err
		}
		var resp catalogv1.ImportAdvisoryResponse
		if err := c.doRaw(ctx, "/v1/advisories:import?name="+url.QueryEscape(p), data, "", &resp); err != nil {
			return fmt.Errorf("import %s: %w", p, err)
		}
		fmt.Fprintf(c.cfg.Out, "catalog: imported %s (%s): %d patches\n", p, resp.GetFormat(), len(resp.GetPatches()))
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range []string{"ALAS2023-2026-1001", "ALAS2023-2026-1007"} {
		if err := c.certifyByHand(ctx, id); err != nil {
			return nil, err
		}
	}
	rule := `{"description":"bug fixes and enhancements of Amazon Linux 2023, 7 days after release",
		"classifications":["CLASSIFICATION_BUGFIX","CLASSIFICATION_ENHANCEMENT"],"osFamilies":["` + demoFamily + `"],
		"approveAfterDays":7,"enabled":true}`
	if err := c.doAs(ctx, http.MethodPut, "/v1/rules/demo-maintenance-7d", rule, c.certifierKey, &catalogv1.PutRuleResponse{}); err != nil {
		return nil, fmt.Errorf("auto-approval rule: %w", err)
	}
	fmt.Fprintln(c.cfg.Out, "catalog: rule demo-maintenance-7d certifies bug fixes and enhancements 7 days after release")

	id := "al2023-" + strings.ToLower(c.cfg.CycleID)
	body := `{"baselineId":"` + id + `","osFamily":"` + demoFamily + `","notes":"demo cycle ` + c.cfg.CycleID + `",
		"patches":[
		 {"patchId":"ALAS2023-2026-1001","order":1},
		 {"patchId":"ALAS2023-2026-0412","order":2},
		 {"patchId":"ALAS2023-2026-0088","order":2,"excludeInstanceTags":["Role=bastion"]},
		 {"patchId":"ALAS2023-2026-1007","order":3,"reboot":"REBOOT_BEHAVIOR_ALWAYS"}]}`
	var pub catalogv1.PublishBaselineResponse
	if err := c.doAs(ctx, http.MethodPost, "/v1/baselines", body, c.certifierKey, &pub); err != nil {
		return nil, fmt.Errorf("publish baseline %s: %w", id, err)
	}
	b := pub.GetBaseline()
	fmt.Fprintf(c.cfg.Out, "catalog: baseline %s published: %s version %d, %d certified patches\n", b.GetBaselineId(), b.GetOsFamily(), b.GetVersion(), len(b.GetPatches()))
	approve := "/v1/tenants/" + url.PathEscape(c.cfg.Tenant) + "/approvals/" + url.PathEscape(id) + ":approve"
	var ap catalogv1.ApproveBaselineResponse
	if err := c.doAs(ctx, http.MethodPost, approve, `{"notes":"approved for the demo cycle"}`, c.adminKey, &ap); err != nil {
		return nil, fmt.Errorf("approve baseline %s: %w", id, err)
	}
	fmt.Fprintf(c.cfg.Out, "catalog: tenant %s approved %s (%s)\n", c.cfg.Tenant, id, ap.GetApproval().GetActor())
	return b, nil
}

// certifyByHand takes a patch through IN_TEST to CERTIFIED with evidence, skipping the steps
// it already went through.
func (c client) certifyByHand(ctx context.Context, id string) error {
	var got catalogv1.GetPatchResponse
	if err := c.get(ctx, "/v1/patches/"+url.PathEscape(id), &got); err != nil {
		return fmt.Errorf("patch %s: %w", id, err)
	}
	p := "/v1/patches/" + url.PathEscape(id) + "/certification"
	if got.GetPatch().GetState() == typesv1.CertificationState_CERTIFICATION_STATE_NEW {
		if err := c.doAs(ctx, http.MethodPost, p, `{"state":"CERTIFICATION_STATE_IN_TEST","notes":"demo staging ring"}`, c.certifierKey, &catalogv1.CertifyPatchResponse{}); err != nil {
			return fmt.Errorf("test %s: %w", id, err)
		}
		got.Patch.State = typesv1.CertificationState_CERTIFICATION_STATE_IN_TEST
	}
	if got.GetPatch().GetState() == typesv1.CertificationState_CERTIFICATION_STATE_IN_TEST {
		body := `{"state":"CERTIFICATION_STATE_CERTIFIED","notes":"demo soak passed","evidence":[{"title":"demo smoke tests","mediaType":"text/plain","content":"12 of 12 passed"}]}`
		if err := c.doAs(ctx, http.MethodPost, p, body, c.certifierKey, &catalogv1.CertifyPatchResponse{}); err != nil {
			return fmt.Errorf("certify %s: %w", id, err)
		}
	}
	fmt.Fprintf(c.cfg.Out, "catalog: %s certified by %s@provider\n", id, certifierName)
	return nil
}
