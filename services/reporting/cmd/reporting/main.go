// Command reporting runs the Patchwave reporting service on its own: it connects to NATS,
// projects the tenant event stream into its compliance read model in Redis (or in memory when
// PATCHWAVE_REDIS_ADDR is empty), and serves patchwave.reporting.v1.ReportingService over gRPC.
package main

import (
	"context"
	"os"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/services/reporting"
)

func main() {
	os.Exit(host.RunCommand(host.Command{Name: reporting.Name, GRPCAddr: "127.0.0.1:9106", OpsAddr: "127.0.0.1:9206", Build: build},
		config.OS(), os.Stderr))
}

// build builds the reporting service, which has no variables of its own.
func build(_ context.Context, _ config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	svc, err := reporting.New(reporting.Config{}, reporting.Deps{Store: deps.Store, Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	return svc, nil, nil
}
