package provider_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
)

func TestParseStaticAccounts(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		wantErr []string
	}{
		{
			name: "a tenant with one account in two regions is read",
			json: `{"acme":[{"provider":"aws","id":"111111111111","roleArn":"arn:aws:iam::111111111111:role/patchwave","externalId":"x","regions":["eu-central-1","us-east-1"]}]}`,
		},
		{
			name:    "text that is not JSON is refused",
			json:    `acme=111111111111`,
			wantErr: []string{"not a JSON object"},
		},
		{
			name:    "an unknown field is refused",
			json:    `{"acme":[{"provider":"aws","id":"111111111111","role":"x","regions":["eu-central-1"]}]}`,
			wantErr: []string{`unknown field "role"`},
		},
		{
			name: "every problem of an account is named",
			json: `{"acme":[{"provider":"gcp","id":"12","roleArn":"role","regions":["Europe"]}]}`,
			wantErr: []string{
				"accounts[acme][0].provider must be \"aws\"",
				"accounts[acme][0].id must be a 12-digit AWS account id",
				"accounts[acme][0].roleArn must be arn:aws:iam::<account>:role/<name>",
				"accounts[acme][0].regions[0] must be a region",
			},
		},
		{
			name:    "a role of another account is refused",
			json:    `{"acme":[{"provider":"aws","id":"111111111111","roleArn":"arn:aws:iam::222222222222:role/p","regions":["eu-central-1"]}]}`,
			wantErr: []string{"must be a role of account 111111111111"},
		},
		{
			name:    "an account without regions is refused",
			json:    `{"acme":[{"provider":"aws","id":"111111111111","roleArn":"arn:aws:iam::111111111111:role/p","regions":[]}]}`,
			wantErr: []string{"accounts[acme][0].regions must name at least one region"},
		},
		{
			name: "an account of two tenants is refused",
			json: `{"acme":[{"provider":"aws","id":"111111111111","roleArn":"arn:aws:iam::111111111111:role/p","regions":["eu-central-1"]}],
			        "globex":[{"provider":"aws","id":"111111111111","roleArn":"arn:aws:iam::111111111111:role/p","regions":["eu-central-1"]}]}`,
			wantErr: []string{"accounts[globex][0].id account 111111111111 is already an account of tenant acme"},
		},
		{
			name:    "a bad tenant id is refused",
			json:    `{"Acme Corp":[{"provider":"aws","id":"111111111111","roleArn":"arn:aws:iam::111111111111:role/p","regions":["eu-central-1"]}]}`,
			wantErr: []string{"accounts[Acme Corp]: invalid argument: Tenant must match"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			accs, err := provider.ParseStaticAccounts([]byte(tt.json))
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				got, err := accs.Accounts(t.Context(), "acme")
				require.NoError(t, err)
				require.Len(t, got, 1)
				require.True(t, got[0].HasRegion("us-east-1"))
				return
			}
			require.ErrorIs(t, err, provider.ErrInvalidArgument)
			for _, w := range tt.wantErr {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestStaticAccountsOfAnUnknownTenantAreNotFound(t *testing.T) {
	_, err := provider.StaticAccounts{}.Accounts(t.Context(), "acme")
	require.ErrorIs(t, err, provider.ErrNotFound)
	require.ErrorContains(t, err, `tenant "acme"`)
}
