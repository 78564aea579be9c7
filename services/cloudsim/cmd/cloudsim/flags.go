package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/patchwave/patchwave/services/cloudsim"
)

type options struct {
	cfg         cloudsim.Config
	printConfig bool
	logLevel    slog.Level
}

// repeated collects a repeatable flag.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("cloudsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var accounts, latencies, jitters, throttles, errorRates repeated
	tenant := fs.String("tenant", "acme", "tenant of the default account")
	accountID := fs.String("account-id", "111111111111", "id of the default account")
	regions := fs.String("regions", "us-east-1", "regions of the default account, separated by +")
	instances := fs.Int("instances", 100, "instances of the default account (running, tagged PatchWave=1..waves round robin)")
	waves := fs.Int("waves", 3, "PatchWave tag values 1..waves of the default account (0: no wave tag)")
	osMix := fs.String("os-mix", "", "OS mix of the default account, e.g. amazon-linux-2023:0.5+windows-server-2022:0.5 (families: "+strings.Join(cloudsim.OSFamilies(), ", ")+")")
	agentless := fs.Float64("agentless", 0, "fraction of the default account's instances without an SSM agent")
	stopped := fs.Float64("stopped", 0, "fraction of the default account's instances that are stopped")
	fs.Var(&accounts, "account", "an account, repeatable: tenant=globex,id=222222222222,regions=eu-west-1+us-east-1,instances=500[,waves=3,agentless=0.1,stopped=0.05,os=rhel-9:1,role=Name,external-id=X]; with -account and no -tenant only these accounts are served")
	fs.StringVar(&o.cfg.Addr, "listen", "127.0.0.1:4566", "listen address (port 0: any free port)")
	fs.StringVar(&o.cfg.StateDir, "state-dir", "", "state directory (mutation log and checkpoints); empty: memory only")
	fs.Int64Var(&o.cfg.Seed, "seed", 1, "seed of ids, credentials and per-instance outcomes")
	fs.StringVar(&o.cfg.ProviderAccountID, "provider-account", "100000000000", "provider account id (owner of the long-lived key)")
	fs.DurationVar(&o.cfg.Timing.Snapshot, "snapshot-duration", 0, "time a snapshot takes from 0% to 100%")
	fs.DurationVar(&o.cfg.Timing.CommandPending, "command-pending", 0, "time an SSM invocation stays Pending")
	fs.DurationVar(&o.cfg.Timing.Command, "command-duration", 0, "time an SSM invocation runs (InProgress)")
	fs.DurationVar(&o.cfg.Timing.Reboot, "reboot-duration", 0, "time a reboot takes")
	fs.DurationVar(&o.cfg.Timing.ReplaceRootVolume, "replace-root-duration", 0, "time a replace-root-volume task takes")
	fs.DurationVar(&o.cfg.Timing.StateChange, "state-change-duration", 0, "time stopping, pending and shutting-down last")
	fs.DurationVar(&o.cfg.Timing.Boot, "boot-duration", 0, "time status checks stay initializing after a start")
	fs.Float64Var(&o.cfg.Faults.SnapshotErrorRate, "snapshot-error-rate", 0, "fraction of snapshots that end in error")
	fs.Float64Var(&o.cfg.Faults.PatchFailureRate, "patch-failure-rate", 0, "fraction of (instance, patch) installs that fail")
	fs.Float64Var(&o.cfg.RebootRequiredRate, "reboot-rate", 0, "fraction of (instance, patch) installs that need a reboot")
	fs.Var(&latencies, "latency", "latency of an operation, repeatable: OP=DURATION (OP: DescribeInstances, ec2:DescribeInstances or *)")
	fs.Var(&jitters, "jitter", "extra random latency of an operation, repeatable: OP=DURATION")
	fs.Var(&throttles, "throttle-rate", "fraction of an operation's calls throttled, repeatable: OP=RATE")
	fs.Var(&errorRates, "error-rate", "fraction of an operation's calls failed with an internal error, repeatable: OP=RATE or OP=RATE:CODE")
	fs.BoolVar(&o.printConfig, "print-config", false, "print the endpoint, credentials and accounts as JSON instead of text")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := o.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return o, fmt.Errorf("-log-level %q: %w", *logLevel, err)
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if len(accounts) == 0 || explicit["tenant"] {
		a := cloudsim.AccountConfig{ID: *accountID, Tenant: *tenant, Regions: strings.Split(*regions, "+"), Instances: *instances,
			Waves: *waves, AgentlessFraction: *agentless, StoppedFraction: *stopped}
		if *osMix != "" {
			mix, err := parseMix(*osMix)
			if err != nil {
				return o, fmt.Errorf("-os-mix: %w", err)
			}
			a.OSMix = mix
		}
		o.cfg.Accounts = append(o.cfg.Accounts, a)
	}
	for _, spec := range accounts {
		a, err := parseAccount(spec)
		if err != nil {
			return o, fmt.Errorf("-account %q: %w", spec, err)
		}
		o.cfg.Accounts = append(o.cfg.Accounts, a)
	}
	o.cfg.Faults.Operations = map[string]cloudsim.OperationFaults{}
	set := func(list repeated, name string, apply func(*cloudsim.OperationFaults, string) error) error {
		for _, kv := range list {
			op, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("-%s %q: must be OP=VALUE", name, kv)
			}
			f := o.cfg.Faults.Operations[op]
			if err := apply(&f, v); err != nil {
				return fmt.Errorf("-%s %q: %w", name, kv, err)
			}
			o.cfg.Faults.Operations[op] = f
		}
		return nil
	}
	for _, err := range []error{
		set(latencies, "latency", func(f *cloudsim.OperationFaults, v string) (err error) {
			f.Latency, err = time.ParseDuration(v)
			return err
		}),
		set(jitters, "jitter", func(f *cloudsim.OperationFaults, v string) (err error) {
			f.Jitter, err = time.ParseDuration(v)
			return err
		}),
		set(throttles, "throttle-rate", func(f *cloudsim.OperationFaults, v string) (err error) {
			f.ThrottleRate, err = strconv.ParseFloat(v, 64)
			return err
		}),
		set(errorRates, "error-rate", func(f *cloudsim.OperationFaults, v string) (err error) {
			rate, code, _ := strings.Cut(v, ":")
			f.ErrorCode = code
			f.ErrorRate, err = strconv.ParseFloat(rate, 64)
			return err
		}),
	} {
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

func parseAccount(spec string) (cloudsim.AccountConfig, error) {
	var a cloudsim.AccountConfig
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return a, fmt.Errorf("%q: must be key=value", kv)
		}
		var err error
		switch k {
		case "tenant":
			a.Tenant = v
		case "id":
			a.ID = v
		case "regions":
			a.Regions = strings.Split(v, "+")
		case "instances":
			a.Instances, err = strconv.Atoi(v)
		case "waves":
			a.Waves, err = strconv.Atoi(v)
		case "agentless":
			a.AgentlessFraction, err = strconv.ParseFloat(v, 64)
		case "stopped":
			a.StoppedFraction, err = strconv.ParseFloat(v, 64)
		case "os":
			a.OSMix, err = parseMix(v)
		case "role":
			a.RoleName = v
		case "external-id":
			a.ExternalID = v
		default:
			return a, fmt.Errorf("unknown key %q (tenant, id, regions, instances, waves, agentless, stopped, os, role, external-id)", k)
		}
		if err != nil {
			return a, fmt.Errorf("%s: %w", k, err)
		}
	}
	if !strings.Contains(spec, "waves=") {
		a.Waves = 3 // like the default account
	}
	return a, nil
}

func parseMix(v string) (map[string]float64, error) {
	mix := map[string]float64{}
	for _, part := range strings.Split(v, "+") {
		name, w, ok := strings.Cut(part, ":")
		if !ok {
			w = "1"
		}
		f, err := strconv.ParseFloat(w, 64)
		if err != nil {
			return nil, fmt.Errorf("%q: weight must be a number", part)
		}
		mix[name] = f
	}
	return mix, nil
}

// startInfo is what -print-config prints.
type startInfo struct {
	Endpoint string `json:"endpoint"`
	Provider struct {
		AccountID       string `json:"account_id"`
		AccessKeyID     string `json:"access_key_id"`
		SecretAccessKey string `json:"secret_access_key"`
	} `json:"provider"`
	Accounts []cloudsim.AccountInfo `json:"accounts"`
}

func printStart(w io.Writer, srv *cloudsim.Server, asJSON bool) error {
	var info startInfo
	info.Endpoint = srv.URL()
	info.Provider.AccountID = srv.ProviderAccountID()
	info.Provider.AccessKeyID, info.Provider.SecretAccessKey = srv.ProviderCredentials()
	info.Accounts = srv.Accounts()
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	fmt.Fprintf(w, "cloudsim endpoint: %s\n", info.Endpoint)
	fmt.Fprintf(w, "provider account %s: AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s\n", info.Provider.AccountID,
		info.Provider.AccessKeyID, info.Provider.SecretAccessKey)
	for _, a := range info.Accounts {
		fmt.Fprintf(w, "account %s tenant %s regions %s instances %d role %s external id %s\n", a.ID, a.Tenant,
			strings.Join(a.Regions, "+"), a.Instances, a.RoleARN, a.ExternalID)
	}
	_, err := fmt.Fprintln(w, "admin API: "+info.Endpoint+"/_cloudsim/stats (Ctrl-C stops)")
	return err
}
