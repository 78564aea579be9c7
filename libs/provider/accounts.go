package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// ProviderAWS is the Account.Provider of an AWS account.
const ProviderAWS = "aws"

// Account is one cloud account of a tenant, and how Patchwave reaches it.
type Account struct {
	// Provider names the cloud: ProviderAWS. Required.
	Provider string `json:"provider"`
	// ID is the account id (on AWS the 12-digit account id). Required.
	ID string `json:"id"`
	// RoleARN is the role Patchwave assumes in the account
	// (arn:aws:iam::<ID>:role/<name>). Required.
	RoleARN string `json:"roleArn"`
	// ExternalID is the external id the role's trust policy requires. Optional (AWS allows a
	// role without one; a tenant's role should have one).
	ExternalID string `json:"externalId,omitempty"`
	// Regions are the regions the tenant's instances live in, e.g. "eu-central-1". Required, at
	// least one.
	Regions []string `json:"regions"`
}

var (
	awsAccountPattern = regexp.MustCompile(`^[0-9]{12}$`)
	awsRegionPattern  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	awsRolePattern    = regexp.MustCompile(`^arn:aws[a-z-]*:iam::([0-9]{12}):role/[\w+=,.@/-]{1,512}$`)
)

// Validate reports every problem with the account, naming each field as field (say,
// "accounts[acme][0]").
func (a Account) Validate(field string) error {
	var errs []error
	if a.Provider != ProviderAWS {
		errs = append(errs, invalid(field+".provider", fmt.Sprintf("must be %q, got %q", ProviderAWS, a.Provider)))
	}
	if !awsAccountPattern.MatchString(a.ID) {
		errs = append(errs, invalid(field+".id", fmt.Sprintf("must be a 12-digit AWS account id, got %q", a.ID)))
	}
	if m := awsRolePattern.FindStringSubmatch(a.RoleARN); m == nil {
		errs = append(errs, invalid(field+".roleArn", fmt.Sprintf("must be arn:aws:iam::<account>:role/<name>, got %q", a.RoleARN)))
	} else if m[1] != a.ID {
		errs = append(errs, invalid(field+".roleArn", fmt.Sprintf("must be a role of account %s, got %q", a.ID, a.RoleARN)))
	}
	if len(a.Regions) == 0 {
		errs = append(errs, invalid(field+".regions", "must name at least one region"))
	}
	for i, r := range a.Regions {
		if !awsRegionPattern.MatchString(r) {
			errs = append(errs, invalid(fmt.Sprintf("%s.regions[%d]", field, i), fmt.Sprintf("must be a region such as eu-central-1, got %q", r)))
		}
	}
	if err := ValidateIDs(field+".regions", a.Regions); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// HasRegion reports whether region is one of the account's regions.
func (a Account) HasRegion(region string) bool { return slices.Contains(a.Regions, region) }

// Accounts resolves a tenant's cloud accounts. The service design (the scheduler's KV) provides
// the production implementation; StaticAccounts serves configuration and tests. Implementations
// are safe for concurrent use and cheap to call: adapters call Accounts on every request to
// check that the target they are given belongs to the tenant.
type Accounts interface {
	// Accounts returns the tenant's accounts. A tenant without accounts is an error wrapping
	// ErrNotFound.
	Accounts(ctx context.Context, tenant string) ([]Account, error)
}

// StaticAccounts is a fixed tenant -> accounts table.
type StaticAccounts map[string][]Account

var _ Accounts = StaticAccounts(nil)

// Accounts returns the tenant's accounts; ErrNotFound when it has none.
func (s StaticAccounts) Accounts(_ context.Context, tenant string) ([]Account, error) {
	accs := s[tenant]
	if len(accs) == 0 {
		return nil, fmt.Errorf("accounts of tenant %q: %w: no accounts configured", tenant, ErrNotFound)
	}
	return slices.Clone(accs), nil
}

// Validate reports every problem with the table: tenant ids, each account, and an account id
// that appears twice (for the same or another tenant: an account belongs to one tenant).
func (s StaticAccounts) Validate() error {
	var errs []error
	owner := make(map[string]string)
	tenants := make([]string, 0, len(s))
	for tenant := range s {
		tenants = append(tenants, tenant)
	}
	sort.Strings(tenants)
	for _, tenant := range tenants {
		field := fmt.Sprintf("accounts[%s]", tenant)
		if err := ValidateTenant(tenant); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
		for i, a := range s[tenant] {
			f := fmt.Sprintf("%s[%d]", field, i)
			if err := a.Validate(f); err != nil {
				errs = append(errs, err)
			}
			if prev, dup := owner[a.ID]; dup && a.ID != "" {
				errs = append(errs, invalid(f+".id", fmt.Sprintf("account %s is already an account of tenant %s", a.ID, prev)))
			}
			owner[a.ID] = tenant
		}
	}
	return errors.Join(errs...)
}

// ParseStaticAccounts reads a tenant -> accounts table from JSON, for example
//
//	{"acme": [{"provider": "aws", "id": "111111111111",
//	           "roleArn": "arn:aws:iam::111111111111:role/patchwave", "externalId": "x",
//	           "regions": ["eu-central-1"]}]}
//
// and validates it. Unknown fields are refused, so a typo fails start-up.
func ParseStaticAccounts(data []byte) (StaticAccounts, error) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var s StaticAccounts
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: accounts: not a JSON object of tenant -> list of accounts: %w", ErrInvalidArgument, err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}
