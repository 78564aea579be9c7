// Command natsauth makes and uses the NATS security material of a Patchwave deployment whose
// services run apart (deploy/nats/README.md):
//
//	natsauth init -dir DIR [-resolver-dir PATH]
//	    make (or keep) the operator and accounts in DIR, write every user's .creds file and
//	    DIR/auth.conf, the fragment deploy/nats/server.conf includes
//	natsauth integrator issue  -dir DIR [-url URL] -tenant T -name N [-ttl 720h] [-deliver-new] [-out FILE]
//	natsauth integrator list   -dir DIR [-url URL] -tenant T
//	natsauth integrator revoke -dir DIR [-url URL] -tenant T -name N
//	natsauth integrator prune  -dir DIR [-url URL]
//	    issue, list, revoke and clean up integrator credentials on a running server, with the
//	    integrations and system users of DIR
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if err := runMain(); err != nil {
		fmt.Fprintln(os.Stderr, "natsauth:", err)
		os.Exit(1)
	}
}

func runMain() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
