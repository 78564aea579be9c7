// Command cloudsim runs Patchwave's AWS API emulator (EC2, SSM, STS and a minimal S3 on one
// endpoint) until SIGINT or SIGTERM. It prints the endpoint, the provider credentials and each
// account's role on start; -help lists the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/patchwave/patchwave/services/cloudsim"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "cloudsim:", err)
		}
		os.Exit(2)
	}
}

// run parses the flags, starts the emulator, prints how to reach it and serves until a signal.
func run(args []string, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	opts.cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: opts.logLevel}))
	srv, err := cloudsim.New(opts.cfg)
	if err != nil {
		return err
	}
	if err := printStart(stdout, srv, opts.printConfig); err != nil {
		_ = srv.Close()
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return srv.Run(ctx)
}
