package design

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/patchwave/patchwave/libs/apierr"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

var (
	// AWS tag keys: 1-128 letters, digits, spaces and _ . : / = + - @, not starting with "aws:".
	tagKeyPattern     = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$`)
	accountIDPattern  = regexp.MustCompile(`^[0-9]{12}$`)
	roleARNPattern    = regexp.MustCompile(`^arn:aws(-cn|-us-gov)?:iam::([0-9]{12}):role/[\w+=,.@/-]{1,512}$`)
	externalIDPattern = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	regionPattern     = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
)

// normalizeTenant checks a tenant's settings and returns them with defaults applied (wave tag
// key "PatchWave", wave limit 3, the built-in policy's defaults) and the output-only times
// cleared. id is the tenant the document belongs to.
func normalizeTenant(v *apierr.Violations, field, id string, t *typesv1.Tenant) *typesv1.Tenant {
	n := &typesv1.Tenant{
		TenantId: id, DisplayName: t.GetDisplayName(), WaveTagKey: t.GetWaveTagKey(),
		WaveLimit: t.GetWaveLimit(), DefaultPolicy: NormalizePolicy(t.GetDefaultPolicy()),
	}
	if t.GetTenantId() != "" && t.GetTenantId() != id {
		v.Add(field+"tenantId", fmt.Sprintf("must be empty or the tenant of the path, %q, got %q", id, t.GetTenantId()))
	}
	checkText(v, field+"displayName", n.DisplayName, 200, true)
	if n.WaveTagKey == "" {
		n.WaveTagKey = DefaultTagKey
	}
	if !tagKeyPattern.MatchString(n.WaveTagKey) || len(n.WaveTagKey) >= 4 && n.WaveTagKey[:4] == "aws:" {
		v.Add(field+"waveTagKey", fmt.Sprintf("must be an AWS tag key: 1-128 letters, digits, spaces or _.:/=+-@, not starting with \"aws:\", got %q", n.WaveTagKey))
	}
	if n.WaveLimit == 0 {
		n.WaveLimit = DefaultWaveLimit
	}
	if n.WaveLimit < 1 || n.WaveLimit > MaxWaveLimit {
		v.Add(field+"waveLimit", fmt.Sprintf("must be from 1 to %d waves, got %d", MaxWaveLimit, n.WaveLimit))
	}
	checkPolicy(v, field+"defaultPolicy.", n.DefaultPolicy)
	return n
}

// normalizeAccount checks a cloud account and returns it with the provider defaulted to "aws".
func normalizeAccount(v *apierr.Violations, field string, a *typesv1.CloudAccount) *typesv1.CloudAccount {
	n := &typesv1.CloudAccount{
		Provider: a.GetProvider(), AccountId: a.GetAccountId(), RoleArn: a.GetRoleArn(),
		ExternalId: a.GetExternalId(), Regions: slices.Clone(a.GetRegions()),
	}
	if n.Provider == "" {
		n.Provider = "aws"
	}
	if n.Provider != "aws" {
		v.Add(field+"provider", fmt.Sprintf("must be \"aws\" (the only cloud supported so far), got %q", n.Provider))
	}
	if !accountIDPattern.MatchString(n.AccountId) {
		v.Add(field+"accountId", fmt.Sprintf("must be a 12-digit AWS account id, got %q", n.AccountId))
	}
	if m := roleARNPattern.FindStringSubmatch(n.RoleArn); m == nil {
		v.Add(field+"roleArn", fmt.Sprintf("must be an IAM role ARN arn:aws:iam::<account id>:role/<name>, got %q", n.RoleArn))
	} else if m[2] != n.AccountId {
		v.Add(field+"roleArn", fmt.Sprintf("must be a role of account %s, got one of account %s", n.AccountId, m[2]))
	}
	if n.ExternalId != "" && (len(n.ExternalId) < 2 || len(n.ExternalId) > 1224 || !externalIDPattern.MatchString(n.ExternalId)) {
		v.Add(field+"externalId", "must be 2-1224 letters, digits or +=,.@:/-_")
	}
	switch {
	case len(n.Regions) == 0:
		v.Add(field+"regions", "must name at least one region, e.g. eu-central-1")
	case len(n.Regions) > MaxRegions:
		v.Add(field+"regions", fmt.Sprintf("must name at most %d regions, got %d", MaxRegions, len(n.Regions)))
	}
	seen := map[string]bool{}
	for i, r := range n.Regions {
		f := fmt.Sprintf("%sregions[%d]", field, i)
		switch {
		case !regionPattern.MatchString(r):
			v.Add(f, fmt.Sprintf("must be a region such as eu-central-1, got %q", r))
		case seen[r]:
			v.Add(f, fmt.Sprintf("duplicate region %q", r))
		}
		seen[r] = true
	}
	return n
}

// normalizeOverride checks an override of a tenant's wave; the wave must exist.
func normalizeOverride(v *apierr.Violations, field string, doc *typesv1.TenantDesign, o *typesv1.Override, c Change) *typesv1.Override {
	n := &typesv1.Override{Wave: o.GetWave(), Key: o.GetKey(), Reason: o.GetReason(), Actor: c.Actor, CreateTime: timestamp(c.Now)}
	if findWave(doc, n.Wave) < 0 {
		v.Add(field+"wave", fmt.Sprintf("must be a defined wave of the tenant, got %d", n.Wave))
	}
	checkKey(v, field+"key", n.Key)
	checkText(v, field+"reason", n.Reason, 500, true)
	return n
}

func findWave(doc *typesv1.TenantDesign, number int32) int {
	return slices.IndexFunc(doc.GetWaves(), func(w *typesv1.Wave) bool { return w.GetNumber() == number })
}

func findAccount(doc *typesv1.TenantDesign, id string) int {
	return slices.IndexFunc(doc.GetAccounts(), func(a *typesv1.CloudAccount) bool { return a.GetAccountId() == id })
}

func findFreeze(freezes []*typesv1.Freeze, id string) int {
	return slices.IndexFunc(freezes, func(f *typesv1.Freeze) bool { return f.GetId() == id })
}

func findOverride(doc *typesv1.TenantDesign, wave int32, key string) int {
	return slices.IndexFunc(doc.GetOverrides(), func(o *typesv1.Override) bool { return o.GetWave() == wave && o.GetKey() == key })
}
