package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/patchwave/patchwave/libs/natsauth"
)

const usage = `usage:
  natsauth init -dir DIR [-resolver-dir PATH]
  natsauth integrator issue  -dir DIR [-url URL] -tenant T -name N [-ttl 720h] [-deliver-new] [-out FILE]
  natsauth integrator list   -dir DIR [-url URL] -tenant T
  natsauth integrator revoke -dir DIR [-url URL] -tenant T -name N
  natsauth integrator prune  -dir DIR [-url URL]`

// run runs one subcommand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "init":
		return runInit(args[1:], stdout)
	case "integrator":
		if len(args) < 2 {
			return errors.New(usage)
		}
		return runIntegrator(ctx, args[1], args[2:], stdout, stderr)
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func runInit(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", "", "directory of the material (created with mode 0700)")
	resolverDir := fs.String("resolver-dir", "./resolver", "the server's account resolver directory, absolute or relative to its working directory")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("init: %w\n%s", err, usage)
	}
	if *dir == "" {
		return fmt.Errorf("init: -dir: required\n%s", usage)
	}
	m, err := natsauth.LoadOrCreate(*dir)
	if err != nil {
		return err
	}
	if err := m.WriteCreds(natsauth.Default); err != nil {
		return err
	}
	if err := m.WriteServerConfig(natsauth.ServerConfig{ResolverDir: *resolverDir}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "operator, accounts and credentials in %s (account %s)\n", *dir, m.Account())
	users := []string{natsauth.UserAdmin, natsauth.UserIntegrations, natsauth.UserSystem}
	for _, s := range natsauth.Default.Services {
		users = append(users, s.Name)
	}
	for _, u := range users {
		fmt.Fprintf(stdout, "  %s\n", natsauth.CredsPath(*dir, u))
	}
	fmt.Fprintf(stdout, "  %s/%s (include it from the nats-server configuration)\n", *dir, natsauth.AuthConfFile)
	return nil
}

// integratorFlags are the flags every integrator subcommand takes.
type integratorFlags struct {
	fs                     *flag.FlagSet
	dir, url, tenant, name *string
}

func newIntegratorFlags(sub string) integratorFlags {
	fs := flag.NewFlagSet("integrator "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return integratorFlags{
		fs:     fs,
		dir:    fs.String("dir", "", "directory of the material made by natsauth init"),
		url:    fs.String("url", nats.DefaultURL, "NATS server URL"),
		tenant: fs.String("tenant", "", "tenant"),
		name:   fs.String("name", "", "integration name"),
	}
}

func runIntegrator(ctx context.Context, sub string, args []string, stdout, stderr io.Writer) error {
	switch sub {
	case "issue", "list", "revoke", "prune":
	default:
		return fmt.Errorf("unknown integrator command %q\n%s", sub, usage)
	}
	f := newIntegratorFlags(sub)
	ttl := f.fs.Duration("ttl", 0, "lifetime of the credentials (default 720h)")
	deliverNew := f.fs.Bool("deliver-new", false, "start with the next event instead of the tenant's first")
	out := f.fs.String("out", "", "write the credentials file here (mode 0600) instead of stdout")
	if err := f.fs.Parse(args); err != nil {
		return fmt.Errorf("integrator %s: %w\n%s", sub, err, usage)
	}
	if *f.dir == "" {
		return fmt.Errorf("integrator %s: -dir: required\n%s", sub, usage)
	}
	x, closeConns, err := connectIntegrators(*f.dir, *f.url)
	if err != nil {
		return err
	}
	defer closeConns()
	switch sub {
	case "issue":
		cred, err := x.Issue(ctx, natsauth.IssueRequest{Tenant: *f.tenant, Name: *f.name, TTL: *ttl, DeliverNew: *deliverNew})
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "integrator %s of tenant %s: consumer %s on %s (%s), inbox prefix %s, expires %s\n",
			cred.Name, cred.Tenant, cred.Consumer, cred.Stream, cred.FilterSubject, cred.InboxPrefix, cred.Expires.Format(time.RFC3339))
		if *out == "" {
			_, err := stdout.Write(cred.Creds)
			return err
		}
		return os.WriteFile(*out, cred.Creds, 0o600)
	case "list":
		list, err := x.List(ctx, *f.tenant)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCONSUMER\tEXPIRES\tSTATE")
		for _, in := range list {
			state := "active"
			if in.Expired {
				state = "expired"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", in.Name, in.Consumer, in.Expires.Format(time.RFC3339), state)
		}
		return tw.Flush()
	case "revoke":
		if err := x.Revoke(ctx, *f.tenant, *f.name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked integrator %s of tenant %s\n", *f.name, *f.tenant)
		return nil
	case "prune":
		deleted, err := x.Prune(ctx)
		for _, c := range deleted {
			fmt.Fprintf(stdout, "deleted %s\n", c)
		}
		return err
	}
	return nil
}

// connectIntegrators connects the integrations and system users of dir to url.
func connectIntegrators(dir, url string) (*natsauth.Integrators, func(), error) {
	m, err := natsauth.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	var conns []*nats.Conn
	closeAll := func() {
		for _, nc := range conns {
			nc.Close()
		}
	}
	for _, user := range []string{natsauth.UserIntegrations, natsauth.UserSystem} {
		nc, err := nats.Connect(url, natsauth.ConnectOptions(natsauth.CredsPath(dir, user), user)...)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("connect %s as %s: %w", url, user, err)
		}
		conns = append(conns, nc)
	}
	x, err := natsauth.NewIntegrators(natsauth.IntegratorsConfig{Conn: conns[0], System: conns[1], Material: m})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return x, closeAll, nil
}
