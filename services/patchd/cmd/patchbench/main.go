// Command patchbench runs waves of instances through patchd's real wiring against an in-process
// cloudsim at zero latency and prints wall time, events/s, time per stage, peak RSS and the raw
// JetStream floor measured in the same run on the same server. Its last line is
//
//	ratio=<x> instances=<n> wall_s=<s> floor_s=<s> peak_rss_mib=<m>
//
// It measures and never fails on time; `make bench` runs it (BENCH_INSTANCES).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/patchwave/patchwave/services/patchd/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "patchbench:", err)
		os.Exit(1)
	}
}
