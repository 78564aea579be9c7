package fleets

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/provider"
)

// DesignAccounts returns where a one-service program (cmd/scheduler, cmd/snapshotter,
// cmd/installer) takes tenants' cloud accounts from: the service design (tenants, their accounts,
// role ARNs, external ids and regions), watched in the design bucket once the program's NATS
// connection is up (deps.OnConnect) — unless PATCHWAVE_AWS_ACCOUNTS names them, for a deployment
// without the design: then it returns nil and FromEnv reads the variable. Pass the result as
// Options.Accounts.
func DesignAccounts(env config.Env, deps host.CommandDeps) provider.Accounts {
	if env.String(EnvAccounts, "") != "" {
		return nil
	}
	accounts := design.NewLateAccounts()
	deps.OnConnect(func(ctx context.Context, nc *nats.Conn) error {
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("fleets: jetstream: %w", err)
		}
		if err := accounts.Start(ctx, js, deps.Logger); err != nil {
			return fmt.Errorf("fleets: the service design's accounts: %w", err)
		}
		return nil
	})
	return accounts
}
