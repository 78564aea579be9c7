// Package cli is patchctl, the operator's command line over Patchwave's REST API: it parses
// flags with the standard library, calls the gateway, decodes answers with protojson into the
// generated API types and prints them as tables or JSON.
//
// Exit codes: 0 success, 2 the API (or the connection to it) failed, 64 usage error.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitAPI   = 2
	ExitUsage = 64
)

// DefaultServer is the API address used when neither --server nor PATCHWAVE_SERVER is set.
const DefaultServer = "http://127.0.0.1:8080"

// EnvServer names the environment variable holding the API address.
const EnvServer = "PATCHWAVE_SERVER"

// Environment variables of the credential: the key itself, or a file holding it (patchd
// writes its operator key to <data-dir>/operator.key).
const (
	EnvKey     = "PATCHWAVE_API_KEY"
	EnvKeyFile = "PATCHWAVE_API_KEY_FILE"
)

const usage = `usage: patchctl [--server URL] [--key KEY | --key-file FILE] [--output table|json] <command> [flags]

Global flags:
  --server URL     REST API address (env PATCHWAVE_SERVER, default http://127.0.0.1:8080)
  --key KEY        API key or token, sent as Authorization: Bearer (env PATCHWAVE_API_KEY)
  --key-file FILE  file holding the key (env PATCHWAVE_API_KEY_FILE; patchd writes
                   <data-dir>/operator.key); --key wins over --key-file, flags over env
  --output FORMAT  table or json (default table)

Commands:
  runs start --tenant T --wave N [--baseline B] [--request-id R] [--wait]
                   start a run of one wave; --wait follows it until it ends
  runs get --tenant T --run R
                   show one run
  runs list --tenant T
                   list a tenant's runs, newest first
  compliance --tenant T
                   compliance coverage, in total and per wave
  failed-patches --tenant T
                   patches that failed, with instance, error and run
  baselines list   published baselines, newest first
  baselines get --baseline B
                   one baseline with its patches
  subscriptions list --tenant T
                   a tenant's notification subscriptions
  deliveries list --tenant T [--subscription S] [--status pending|sent|dead]
                   a tenant's notification deliveries, newest first
  deliveries redeliver --tenant T --delivery D
                   send a delivery again (a dead-lettered one, typically)

Exit status: 0 success, 2 API error, 64 usage error.
`

// CLI is one invocation environment of patchctl.
type CLI struct {
	// Stdout receives results. Required.
	Stdout io.Writer
	// Stderr receives errors, usage and --wait progress in json mode. Required.
	Stderr io.Writer
	// Getenv reads the environment. Optional, default os.Getenv.
	Getenv func(string) string
	// HTTPClient calls the API. Optional, default a client with a 30s timeout.
	HTTPClient *http.Client
	// PollInterval is how often --wait polls the run. Optional, default 1s.
	PollInterval time.Duration
}

// Run runs patchctl with args (without the program name) in the process environment and
// returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &CLI{Stdout: stdout, Stderr: stderr}
	return c.Run(ctx, args)
}

// usageError is a command line that cannot be run.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{msg: fmt.Sprintf(format, a...)} }

// Run runs patchctl with args (without the program name) and returns the exit code.
func (c *CLI) Run(ctx context.Context, args []string) int {
	err := c.run(ctx, args)
	var uerr usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		_, _ = io.WriteString(c.Stdout, usage)
		return ExitOK
	case errors.As(err, &uerr):
		_, _ = fmt.Fprintf(c.Stderr, "patchctl: %s\n\n%s", uerr.msg, usage)
		return ExitUsage
	default:
		_, _ = fmt.Fprintf(c.Stderr, "patchctl: %s\n", err)
		return ExitAPI
	}
}

// options are the global flags.
type options struct {
	client *client
	json   bool
}

func (c *CLI) run(ctx context.Context, args []string) error {
	getenv := c.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	server := getenv(EnvServer)
	if server == "" {
		server = DefaultServer
	}
	fs := newFlagSet("patchctl")
	fs.StringVar(&server, "server", server, "REST API address")
	keyFlag := fs.String("key", "", "API key or token")
	keyFile := fs.String("key-file", "", "file holding the API key")
	output := fs.String("output", "table", "table or json")
	if err := parse(fs, args); err != nil {
		return err
	}
	// A missing credential is reported by the first call, after the command line is checked.
	key, keyErr := credential(*keyFlag, *keyFile, getenv)
	if *output != "table" && *output != "json" {
		return usagef("--output %q: must be table or json", *output)
	}
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--server %q: must be an http:// or https:// URL", server)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	o := options{client: &client{base: strings.TrimRight(server, "/"), http: hc, key: key, keyErr: keyErr}, json: *output == "json"}

	rest := fs.Args()
	if len(rest) == 0 {
		return usagef("missing command")
	}
	cmd, rest := rest[0], rest[1:]
	switch cmd {
	case "runs":
		if len(rest) == 0 {
			return usagef("runs: missing subcommand (start, get or list)")
		}
		sub, rest := rest[0], rest[1:]
		switch sub {
		case "start":
			return c.runsStart(ctx, o, rest)
		case "get":
			return c.runsGet(ctx, o, rest)
		case "list":
			return c.runsList(ctx, o, rest)
		default:
			return usagef("runs %s: unknown subcommand (want start, get or list)", sub)
		}
	case "compliance":
		return c.compliance(ctx, o, rest)
	case "failed-patches":
		return c.failedPatches(ctx, o, rest)
	case "baselines":
		if len(rest) == 0 {
			return usagef("baselines: missing subcommand (list or get)")
		}
		sub, rest := rest[0], rest[1:]
		switch sub {
		case "list":
			return c.baselinesList(ctx, o, rest)
		case "get":
			return c.baselinesGet(ctx, o, rest)
		default:
			return usagef("baselines %s: unknown subcommand (want list or get)", sub)
		}
	case "subscriptions":
		if len(rest) == 0 || rest[0] != "list" {
			return usagef("subscriptions: missing or unknown subcommand (want list)")
		}
		return c.subscriptionsList(ctx, o, rest[1:])
	case "deliveries":
		if len(rest) == 0 {
			return usagef("deliveries: missing subcommand (list or redeliver)")
		}
		sub, rest := rest[0], rest[1:]
		switch sub {
		case "list":
			return c.deliveriesList(ctx, o, rest)
		case "redeliver":
			return c.deliveriesRedeliver(ctx, o, rest)
		default:
			return usagef("deliveries %s: unknown subcommand (want list or redeliver)", sub)
		}
	default:
		return usagef("unknown command %q", cmd)
	}
}

// credential picks the key: --key, --key-file, PATCHWAVE_API_KEY, PATCHWAVE_API_KEY_FILE, in
// that order. Nothing answers without one.
func credential(key, file string, getenv func(string) string) (string, error) {
	if key == "" && file == "" {
		key, file = getenv(EnvKey), getenv(EnvKeyFile)
	}
	if key != "" {
		return strings.TrimSpace(key), nil
	}
	if file == "" {
		return "", usagef("no credential: give --key or --key-file (or %s, %s); patchd writes its operator key to <data-dir>/operator.key", EnvKey, EnvKeyFile)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", usagef("--key-file: %v", err)
	}
	if k := strings.TrimSpace(string(b)); k != "" {
		return k, nil
	}
	return "", usagef("--key-file %s: the file is empty", file)
}

// newFlagSet returns a flag set that reports errors instead of printing them or exiting.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses args into fs and turns a bad flag into a usage error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	return nil
}

// parseCommand parses a subcommand's flags and refuses positional arguments.
func parseCommand(fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// required checks that each named flag value is set.
func required(cmd string, flags ...[2]string) error {
	var missing []string
	for _, f := range flags {
		if strings.TrimSpace(f[1]) == "" {
			missing = append(missing, "--"+f[0])
		}
	}
	if len(missing) > 0 {
		return usagef("%s: missing required flag %s", cmd, strings.Join(missing, ", "))
	}
	return nil
}
