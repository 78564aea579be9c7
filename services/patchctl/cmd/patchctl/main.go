// Command patchctl is the Patchwave operator CLI over the REST API; run `patchctl -h` for usage.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/patchwave/patchwave/services/patchctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
