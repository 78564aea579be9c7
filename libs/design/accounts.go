package design

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/provider"
)

var _ provider.Accounts = (*View)(nil)

// Accounts implements provider.Accounts from the tenants' documents, so the fleet adapters take
// a tenant's cloud accounts from the service design. It waits for the initial values (at most
// 10 seconds); an unknown tenant, or one without accounts, is an error wrapping
// provider.ErrNotFound.
func (v *View) Accounts(ctx context.Context, tenant string) ([]provider.Account, error) {
	if err := v.WaitReady(ctx); err != nil {
		return nil, fmt.Errorf("accounts of tenant %q: %w", tenant, err)
	}
	t, ok := v.Tenant(tenant)
	if !ok {
		return nil, fmt.Errorf("accounts of tenant %q: %w: no such tenant in the service design", tenant, provider.ErrNotFound)
	}
	accs := t.Design.GetAccounts()
	if len(accs) == 0 {
		return nil, fmt.Errorf("accounts of tenant %q: %w: the tenant has no cloud accounts", tenant, provider.ErrNotFound)
	}
	out := make([]provider.Account, len(accs))
	for i, a := range accs {
		out[i] = provider.Account{
			Provider: a.GetProvider(), ID: a.GetAccountId(), RoleARN: a.GetRoleArn(),
			ExternalID: a.GetExternalId(), Regions: slices.Clone(a.GetRegions()),
		}
	}
	return out, nil
}

// LateAccounts is a provider.Accounts for a fleet adapter that is built before the process has
// its NATS connection (a one-service program: host.RunCommand builds the component first): it
// answers from a View of the design bucket once Start has been called, and until then waits
// for it, within the caller's context.
type LateAccounts struct {
	started chan struct{}
	once    sync.Once
	view    *View
}

var _ provider.Accounts = (*LateAccounts)(nil)

// NewLateAccounts returns a LateAccounts that answers once started.
func NewLateAccounts() *LateAccounts { return &LateAccounts{started: make(chan struct{})} }

// Start builds the View on js and watches the bucket until ctx is done (in the background; it
// logs what goes wrong and retries, as View.Run does). Calls after the first do nothing.
func (a *LateAccounts) Start(ctx context.Context, js jetstream.JetStream, log *slog.Logger) error {
	var err error
	a.once.Do(func() {
		var v *View
		if v, err = NewView(ViewConfig{JetStream: js, Logger: log}); err != nil {
			return
		}
		go func() { _ = v.Run(ctx) }()
		a.view = v
		close(a.started)
	})
	return err
}

// Accounts implements provider.Accounts with View.Accounts, once started.
func (a *LateAccounts) Accounts(ctx context.Context, tenant string) ([]provider.Account, error) {
	select {
	case <-a.started:
	case <-ctx.Done():
		return nil, fmt.Errorf("accounts of tenant %q: the service design is not being watched yet: %w", tenant, ctx.Err())
	}
	return a.view.Accounts(ctx, tenant)
}
