// Command catalog runs the Patchwave catalog on its own: it connects to NATS, publishes its
// configured baselines once, projects catalog.baseline.published into its read model in Redis
// (or in memory when PATCHWAVE_REDIS_ADDR is empty), and serves
// patchwave.catalog.v1.CatalogService over gRPC.
package main

import (
	"context"
	"os"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/services/catalog"
)

func main() {
	os.Exit(host.RunCommand(host.Command{Name: catalog.Name, GRPCAddr: "127.0.0.1:9101", OpsAddr: "127.0.0.1:9201", Build: build},
		config.OS(), os.Stderr))
}

// build builds the catalog, which has no variables of its own.
func build(_ context.Context, _ config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	svc, err := catalog.New(catalog.Config{}, catalog.Deps{Store: deps.Store, Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	return svc, nil, nil
}
