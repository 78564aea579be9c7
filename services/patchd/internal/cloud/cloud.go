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
}

// Cloud is a running emulator and the fleet against it.
type Cloud struct {
	// Sim is the emulator: stats, faults, instances.
	Sim *cloudsim.Server
	// Fleet is the AWS adapter against it.
	Fleet *fleets.Fleet
}

// Start starts the emulator (state kept in cfg.Sim.StateDir, if set, so a restarted patchd has
// the same fleet) and builds the adapter.
func Start(cfg Config) (*Cloud, error) {
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
	srv, err := cloudsim.New(sim)
	if err != nil {
		return nil, fmt.Errorf("cloudsim: %w", err)
	}
	srv.Start()
	accounts := provider.StaticAccounts{}
	for _, a := range srv.Accounts() {
		accounts[a.Tenant] = append(accounts[a.Tenant], provider.Account{
			Provider: provider.ProviderAWS, ID: a.ID, RoleARN: a.RoleARN, ExternalID: a.ExternalID, Regions: a.Regions,
		})
	}
	raw, err := json.Marshal(accounts)
	if err != nil {
		_ = srv.Close()
		return nil, err
	}
	key, secret := srv.ProviderCredentials()
	// The emulator is no AWS account: the rate limits only keep the adapter from flooding it.
	env := map[string]string{
		fleets.EnvProvider:        provider.ProviderAWS,
		fleets.EnvEndpoint:        srv.URL(),
		fleets.EnvAccessKeyID:     key,
		fleets.EnvSecretAccessKey: secret,
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
		_ = srv.Close()
		return nil, fmt.Errorf("fleet: %w", err)
	}
	return &Cloud{Sim: srv, Fleet: fleet}, nil
}

// Close stops the adapter and the emulator (which flushes its state).
func (c *Cloud) Close() error {
	return errors.Join(c.Fleet.Close(), c.Sim.Close())
}
