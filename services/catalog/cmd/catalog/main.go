// Command catalog runs the Patchwave catalog on its own: it connects to NATS, keeps its state
// in JetStream KV buckets, polls its feed sources, and serves patchwave.catalog.v1.CatalogService
// over gRPC.
//
// Sources come from PATCHWAVE_CATALOG_FEED_DIRS: a comma-separated list of name=directory
// (e.g. "ubuntu=/var/lib/feeds/ubuntu,rocky=/var/lib/feeds/rocky"), polled daily.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/services/catalog"
)

func main() {
	os.Exit(host.RunCommand(host.Command{Name: catalog.Name, GRPCAddr: "127.0.0.1:9101", OpsAddr: "127.0.0.1:9201", Build: build},
		config.OS(), os.Stderr))
}

// build builds the catalog from its variables.
func build(_ context.Context, env config.Env, deps host.CommandDeps) (host.Component, []any, error) {
	var cfg catalog.Config
	if dirs := env.String("PATCHWAVE_CATALOG_FEED_DIRS", ""); dirs != "" {
		for _, pair := range strings.Split(dirs, ",") {
			name, dir, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok {
				return nil, nil, fmt.Errorf("PATCHWAVE_CATALOG_FEED_DIRS %q: want name=directory[,name=directory...]", dirs)
			}
			cfg.Sources = append(cfg.Sources, catalog.Source{Name: name, Kind: catalog.KindDir, Dir: dir})
		}
	}
	svc, err := catalog.New(cfg, catalog.Deps{Logger: deps.Logger})
	if err != nil {
		return nil, nil, err
	}
	return svc, []any{"feed_dirs", env.String("PATCHWAVE_CATALOG_FEED_DIRS", "")}, nil
}
