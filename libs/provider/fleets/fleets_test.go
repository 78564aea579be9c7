package fleets_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/config"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/fleets"
	"github.com/patchwave/patchwave/libs/ratelimit"
	"github.com/patchwave/patchwave/libs/testkit"
)

const accountsJSON = `{"acme":[{"provider":"aws","id":"111111111111","roleArn":"arn:aws:iam::111111111111:role/patchwave","externalId":"x","regions":["eu-central-1","us-east-1"]}]}`

func TestFromEnvBuildsTheAWSFleet(t *testing.T) {
	f, err := fleets.FromEnv(config.Map(map[string]string{
		fleets.EnvEndpoint:        "http://127.0.0.1:4566",
		fleets.EnvAccessKeyID:     "AKIAPROVIDER",
		fleets.EnvSecretAccessKey: "secret",
		fleets.EnvAccounts:        accountsJSON,
		"PATCHWAVE_AWS_EC2_RATE":  "7.5",
		"PATCHWAVE_AWS_EC2_BURST": "9",
	}), fleets.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	require.Equal(t, "aws", f.Provider)
	require.IsType(t, &ratelimit.Memory{}, f.Limiter)
	targets, err := f.Targets(t.Context(), "acme")
	require.NoError(t, err)
	require.Equal(t, []provider.Target{
		{Tenant: "acme", Account: "111111111111", Region: "eu-central-1"},
		{Tenant: "acme", Account: "111111111111", Region: "us-east-1"},
	}, targets)

	cfg, ropts, err := fleets.AWSConfig(config.Map(map[string]string{fleets.EnvAccounts: accountsJSON, "PATCHWAVE_AWS_EC2_RATE": "7.5", "PATCHWAVE_AWS_EC2_BURST": "9"}))
	require.NoError(t, err)
	require.Nil(t, ropts, "no Redis without PATCHWAVE_REDIS_ADDR")
	require.Equal(t, ratelimit.Limit{Rate: 7.5, Burst: 9}, cfg.Limits.EC2)
	require.Equal(t, 5, cfg.Retry.MaxAttempts)
}

func TestFromEnvSharesTheLimiterThroughRedis(t *testing.T) {
	srv := testkit.StartRedis(t)
	f, err := fleets.FromEnv(config.Map(map[string]string{
		fleets.EnvAccounts:        accountsJSON,
		fleets.EnvAccessKeyID:     "AKIAPROVIDER",
		fleets.EnvSecretAccessKey: "secret",
		fleets.EnvRedisAddr:       srv.Addr(),
	}), fleets.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })
	require.IsType(t, &ratelimit.Redis{}, f.Limiter)
	// The budget is in that Redis: a second limiter on the same server sees it taken.
	lim := ratelimit.Limit{Rate: 1.0 / 3600, Burst: 1}
	ok, _, err := f.Limiter.Allow(t.Context(), "k", lim)
	require.NoError(t, err)
	require.True(t, ok)
	other, err := ratelimit.NewRedis(ratelimit.RedisConfig{Client: srv.Client(t)})
	require.NoError(t, err)
	ok, _, err = other.Allow(t.Context(), "k", lim)
	require.NoError(t, err)
	require.False(t, ok)
}

func TestFromEnvTakesAccountsFromOptions(t *testing.T) {
	f, err := fleets.FromEnv(config.Map(map[string]string{
		fleets.EnvAccessKeyID: "AKIAPROVIDER", fleets.EnvSecretAccessKey: "secret",
	}), fleets.Options{Accounts: provider.StaticAccounts{"globex": {{
		Provider: "aws", ID: "222222222222", RoleARN: "arn:aws:iam::222222222222:role/p", Regions: []string{"eu-west-1"},
	}}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	targets, err := f.Targets(t.Context(), "globex")
	require.NoError(t, err)
	require.Len(t, targets, 1)
}

func TestFromEnvNamesEveryBadVariable(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string
	}{
		{
			name:    "an unknown provider is refused",
			env:     map[string]string{fleets.EnvProvider: "gcp"},
			wantErr: []string{`PATCHWAVE_PROVIDER="gcp": expected "aws"`},
		},
		{
			name:    "accounts are required",
			env:     map[string]string{},
			wantErr: []string{"PATCHWAVE_AWS_ACCOUNTS is required"},
		},
		{
			name: "every bad value is named",
			env: map[string]string{
				fleets.EnvAccounts:        `{"acme":[{"provider":"aws","id":"1"}]}`,
				fleets.EnvEndpoint:        "127.0.0.1:4566",
				fleets.EnvAccessKeyID:     "AKIA",
				fleets.EnvMaxAttempts:     "0",
				fleets.EnvMaxBackoff:      "soon",
				"PATCHWAVE_AWS_SSM_RATE":  "fast",
				"PATCHWAVE_AWS_EC2_BURST": "0",
			},
			wantErr: []string{
				"PATCHWAVE_AWS_ACCOUNTS: invalid argument: accounts[acme][0].id must be a 12-digit AWS account id",
				"PATCHWAVE_AWS_ENDPOINT_URL=\"127.0.0.1:4566\": expected an http(s) URL",
				"PATCHWAVE_AWS_ACCESS_KEY_ID and PATCHWAVE_AWS_SECRET_ACCESS_KEY must be set both or neither",
				"PATCHWAVE_AWS_MAX_ATTEMPTS=\"0\": expected a whole number >= 1",
				"PATCHWAVE_AWS_MAX_BACKOFF=\"soon\"",
				"PATCHWAVE_AWS_SSM_RATE=\"fast\"",
				"PATCHWAVE_AWS_EC2_RATE/PATCHWAVE_AWS_EC2_BURST: rate limit: Burst must be >= 1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fleets.FromEnv(config.Map(tt.env), fleets.Options{})
			require.Error(t, err)
			for _, w := range tt.wantErr {
				require.ErrorContains(t, err, w)
			}
		})
	}
}
