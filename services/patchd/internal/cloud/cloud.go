// Package cloud runs patchd's fleet: an in-process cloudsim (Patchwave's AWS API emulator) on a
// loopback port, and the AWS adapter against it, built by libs/provider/fleets exactly as a
// service builds its fleet from PATCHWAVE_AWS_* variables. Pointed at AWS instead, nothing but
// the variables would change.
package cloud

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/fleets"
	"github.com/patchwave/patchwave/services/cloudsim"
)

// AccountID is the account of patchd's demo tenant in the emulator.
const AccountID = "111111111111"

// Region is the region of patchd's demo instances.
const Region = "eu-central-1"

// ExternalID is the external id of the demo account's role; the demo's service design lists
// the same account, role and external id (demo.Account's defaults).
const ExternalID = "patchwave-demo"

// Config configures the cloud.
type Config struct {
	// Sim is the emulator's configuration. Its Accounts default to one account of Tenant with
	// Instances running instances tagged over Waves waves.
	Sim cloudsim.Config
	// Tenant, Instances and Waves seed the default account; Instances 0 seeds none.
	Tenant    string
	Instances int
	Waves     int
	// Accounts resolves tenants' accounts for the adapter (patchd: the service design).
	// Optional, default the emulator's accounts, listed as static accounts.
	Accounts provider.Accounts
	// Logger. Optional.
	Logger *slog.Logger
	// Remote, when its Endpoint is set, is an emulator running in another process: the
	// adapter is built against it and no emulator starts here (Sim, Tenant, Instances and
	// Waves are then not used).
	Remote Remote
}

// Remote is an emulator in another process: its endpoint, the provider's long-lived key and
// its tenant accounts (what `cloudsim -print-config` prints).
type Remote struct {
	Endpoint        string                 `json:"endpoint"`
	AccessKeyID     string                 `json:"access_key_id"`
	SecretAccessKey string                 `json:"secret_access_key"`
	Accounts        []cloudsim.AccountInfo `json:"accounts"`
}

// SimConfig is the emulator's configuration for cfg: cfg.Sim with its Accounts defaulting to
// one account of Tenant (AccountID, Region, ExternalID) with Instances running instances
// tagged over Waves waves, all of the demo baseline's OS family.
func SimConfig(cfg Config) cloudsim.Config {
	sim := cfg.Sim
	if len(sim.Accounts) == 0 && cfg.Tenant != "" {
		sim.Accounts = []cloudsim.AccountConfig{{
			ID: AccountID, Tenant: cfg.Tenant, Regions: []string{Region}, RoleName: "PatchwaveAccess", ExternalID: ExternalID,
			Instances: cfg.Instances, Waves: cfg.Waves,
			// One OS family, the demo baseline's: every instance gets its family's baseline,
			// and the demo publishes one.
			OSMix: map[string]float64{"amazon-linux-2023": 1},
		}}
	}
	if sim.Logger == nil && cfg.Logger != nil {
		sim.Logger = cfg.Logger.With("component", "cloudsim")
	}
	return sim
}

// Cloud is a running emulator and the fleet against it.
type Cloud struct {
	// Sim is the emulator: stats, faults, instances; nil when it runs in another process. nil when it runs in another process.
	Sim *cloudsim.Server
	// Fleet is the AWS adapter against it.
	Fleet *fleets.Fleet
	// Endpoint and the provider's key are the emulator's, wherever it runs.
	Endpoint, AccessKeyID, SecretAccessKey string
}

// Start starts the emulator (state kept in cfg.Sim.StateDir, if set, so a restarted patchd has
// the same fleet) and builds the adapter.
func Start(cfg Config) (*Cloud, error) {
	if cfg.Remote.Endpoint != "" {
		return build(cfg, nil, cfg.Remote)
	}
	srv, err := cloudsim.New(SimConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("cloudsim: %w", err)
	}
	srv.Start()
	key, secret := srv.ProviderCredentials()
	c, err := build(cfg, srv, Remote{Endpoint: srv.URL(), AccessKeyID: key, SecretAccessKey: secret, Accounts: srv.Accounts()})
	if err != nil {
		_ = srv.Close()
		return nil, err
	}
	return c, nil
}

// build makes the adapter against the emulator at r (srv, if it runs here).
func build(cfg Config, srv *cloudsim.Server, r Remote) (*Cloud, error) {
	accounts := provider.StaticAccounts{}
	for _, a := range r.Accounts {
		accounts[a.Tenant] = append(accounts[a.Tenant], provider.Account{
			Provider: provider.ProviderAWS, ID: a.ID, RoleARN: a.RoleARN, ExternalID: a.ExternalID, Regions: a.Regions,
		})
	}
	raw, err := json.Marshal(accounts)
	if err != nil {
		return nil, err
	}
	// The emulator is no AWS account: the rate limits only keep the adapter from flooding it.
	env := map[string]string{
		fleets.EnvProvider:        provider.ProviderAWS,
		fleets.EnvEndpoint:        r.Endpoint,
		fleets.EnvAccessKeyID:     r.AccessKeyID,
		fleets.EnvSecretAccessKey: r.SecretAccessKey,
		fleets.EnvAccounts:        string(raw),
		fleets.EnvConcurrency:     "64",
		fleets.EnvMaxBackoff:      "200ms",
	}
	for _, svc := range []string{"EC2", "SSM", "S3", "STS"} {
		env["PATCHWAVE_AWS_"+svc+"_RATE"] = strconv.Itoa(100000)
		env["PATCHWAVE_AWS_"+svc+"_BURST"] = strconv.Itoa(100000)
	}
	fleet, err := fleets.FromEnv(config.Map(env), fleets.Options{Accounts: cfg.Accounts, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	return &Cloud{Sim: srv, Fleet: fleet, Endpoint: r.Endpoint, AccessKeyID: r.AccessKeyID, SecretAccessKey: r.SecretAccessKey}, nil
}

// Close stops the adapter and the emulator (which flushes its state).
func (c *Cloud) Close() error {
	err := c.Fleet.Close()
	if c.Sim != nil {
		err = errors.Join(err, c.Sim.Close())
	}
	return err
}
