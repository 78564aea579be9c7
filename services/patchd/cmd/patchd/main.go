// Command patchd runs every Patchwave service in one process with an embedded NATS JetStream
// server and a simulated fleet. With -demo it also drives one patch cycle through the REST API
// and prints the results; -serve keeps it serving afterwards.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/patchwave/patchwave/services/patchd/internal/cli"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "patchd:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
