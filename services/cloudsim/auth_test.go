package cloudsim_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
)

func twoTenants() []cloudsim.AccountConfig {
	return []cloudsim.AccountConfig{acmeConfig(5),
		{ID: globexID, Tenant: "globex", Regions: []string{"eu-west-1", region}, Instances: 6, Waves: 3}}
}

func TestAssumeRole(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: twoTenants()})
	provider := sts.NewFromConfig(providerConfig(srv))
	acme, _ := srv.Account(acmeID)
	globex, _ := srv.Account(globexID)

	tests := []struct {
		name       string
		role       string
		externalID *string
		code       string
	}{
		{"the right external id is accepted", acme.RoleARN, aws.String(acme.ExternalID), ""},
		{"a wrong external id is denied", acme.RoleARN, aws.String("wrong"), "AccessDenied"},
		{"a missing external id is denied", acme.RoleARN, nil, "AccessDenied"},
		{"another account's external id is denied", acme.RoleARN, aws.String(globex.ExternalID), "AccessDenied"},
		{"an unknown role is denied", "arn:aws:iam::" + acmeID + ":role/Other", aws.String(acme.ExternalID), "AccessDenied"},
		{"an unknown account is denied", "arn:aws:iam::333333333333:role/PatchwaveAccess", aws.String(acme.ExternalID), "AccessDenied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := provider.AssumeRole(t.Context(), &sts.AssumeRoleInput{RoleArn: aws.String(tt.role),
				RoleSessionName: aws.String("patchwave"), ExternalId: tt.externalID, DurationSeconds: aws.Int32(900)})
			if tt.code != "" {
				requireAPIError(t, err, tt.code, 403)
				return
			}
			require.NoError(t, err)
			require.Regexp(t, `^ASIA[A-Z2-7]{16}$`, *out.Credentials.AccessKeyId)
			require.NotEmpty(t, *out.Credentials.SecretAccessKey)
			require.NotEmpty(t, *out.Credentials.SessionToken)
			require.WithinDuration(t, time.Now().Add(15*time.Minute), *out.Credentials.Expiration, time.Minute)
			require.Equal(t, "arn:aws:sts::"+acmeID+":assumed-role/PatchwaveAccess/patchwave", *out.AssumedRoleUser.Arn)
		})
	}

	t.Run("a duration outside 900..43200 is refused", func(t *testing.T) {
		_, err := provider.AssumeRole(t.Context(), &sts.AssumeRoleInput{RoleArn: aws.String(acme.RoleARN),
			RoleSessionName: aws.String("patchwave"), ExternalId: aws.String(acme.ExternalID), DurationSeconds: aws.Int32(60)})
		requireAPIError(t, err, "ValidationError", 400)
	})
	t.Run("temporary credentials are scoped to the account", func(t *testing.T) {
		id, err := sts.NewFromConfig(tenantConfig(t, srv, globexID)).GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
		require.NoError(t, err)
		require.Equal(t, globexID, *id.Account)
		who, err := provider.GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
		require.NoError(t, err)
		require.Equal(t, srv.ProviderAccountID(), *who.Account)
	})
}

func TestCrossAccountIsolation(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: twoTenants()})
	acme := newClients(tenantConfig(t, srv, acmeID))
	globexCfg := tenantConfig(t, srv, globexID)
	globex := newClients(globexCfg)
	acmeIDs := srv.InstanceIDs(acmeID, region)

	_, err := globex.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: acmeIDs[:1]})
	requireAPIError(t, err, "InvalidInstanceID.NotFound", 400)
	_, err = globex.ssm.SendCommand(t.Context(), &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunPatchBaseline"),
		InstanceIds: acmeIDs[:1], Parameters: map[string][]string{"Operation": {"Scan"}}})
	requireAPIError(t, err, "InvalidInstanceId", 400)
	_, err = globex.ssm.DescribeInstancePatches(t.Context(), &ssm.DescribeInstancePatchesInput{InstanceId: aws.String(acmeIDs[0])})
	requireAPIError(t, err, "InvalidInstanceId", 400)

	own, _ := describeAll(t, globex.ec2, &ec2.DescribeInstancesInput{})
	require.Len(t, own, 3, "globex has 3 of its 6 instances in us-east-1")
	eu := globexCfg.Copy()
	eu.Region = "eu-west-1"
	euIDs, _ := describeAll(t, ec2.NewFromConfig(eu), &ec2.DescribeInstancesInput{})
	require.Len(t, euIDs, 3, "and 3 in eu-west-1: calls are scoped to the request's region")
	_, err = ec2.NewFromConfig(eu).DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: own[:1]})
	requireAPIError(t, err, "InvalidInstanceID.NotFound", 400)

	acmeAll, _ := describeAll(t, acme.ec2, &ec2.DescribeInstancesInput{})
	require.ElementsMatch(t, acmeIDs, acmeAll)
	_, err = ec2.NewFromConfig(providerConfig(srv)).DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{})
	requireAPIError(t, err, "UnauthorizedOperation", 403)
	_, err = ssm.NewFromConfig(providerConfig(srv)).DescribeInstanceInformation(t.Context(), &ssm.DescribeInstanceInformationInput{})
	requireAPIError(t, err, "AccessDeniedException", 400)
}

func TestSignatureVerification(t *testing.T) {
	clock := newFakeClock()
	srv := startServer(t, cloudsim.Config{Clock: clock.Now, Accounts: []cloudsim.AccountConfig{acmeConfig(1)}})
	key, secret := srv.ProviderCredentials()
	tenant := tenantConfig(t, srv, acmeID)
	creds, err := tenant.Credentials.Retrieve(t.Context())
	require.NoError(t, err)

	wrongSecret := awsConfig(srv, key, secret+"x", "")
	unknownKey := awsConfig(srv, "AKIAUNKNOWNUNKNOWN00", secret, "")
	wrongToken := awsConfig(srv, creds.AccessKeyID, creds.SecretAccessKey, "forged")

	tests := []struct {
		name   string
		call   func() error
		code   string
		status int
	}{
		{"EC2 with a wrong secret", func() error {
			_, err := ec2.NewFromConfig(wrongSecret).DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{})
			return err
		}, "AuthFailure", 401},
		{"EC2 with an unknown key", func() error {
			_, err := ec2.NewFromConfig(unknownKey).DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{})
			return err
		}, "AuthFailure", 401},
		{"SSM with a wrong secret", func() error {
			_, err := ssm.NewFromConfig(wrongSecret).DescribeInstanceInformation(t.Context(), &ssm.DescribeInstanceInformationInput{})
			return err
		}, "InvalidSignatureException", 400},
		{"SSM with an unknown key", func() error {
			_, err := ssm.NewFromConfig(unknownKey).DescribeInstanceInformation(t.Context(), &ssm.DescribeInstanceInformationInput{})
			return err
		}, "UnrecognizedClientException", 400},
		{"SSM with a forged session token", func() error {
			_, err := ssm.NewFromConfig(wrongToken).DescribeInstanceInformation(t.Context(), &ssm.DescribeInstanceInformationInput{})
			return err
		}, "UnrecognizedClientException", 400},
		{"STS with a wrong secret", func() error {
			_, err := sts.NewFromConfig(wrongSecret).GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
			return err
		}, "SignatureDoesNotMatch", 403},
		{"STS with an unknown key", func() error {
			_, err := sts.NewFromConfig(unknownKey).GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
			return err
		}, "InvalidClientTokenId", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireAPIError(t, tt.call(), tt.code, tt.status)
		})
	}

	t.Run("expired session credentials are refused", func(t *testing.T) {
		_, err := ec2.NewFromConfig(tenant).DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{})
		require.NoError(t, err)
		clock.Advance(time.Hour + time.Second)
		_, err = ec2.NewFromConfig(tenant).DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{})
		requireAPIError(t, err, "AuthFailure", 401)
		_, err = ssm.NewFromConfig(tenant).DescribeInstanceInformation(t.Context(), &ssm.DescribeInstanceInformationInput{})
		requireAPIError(t, err, "ExpiredTokenException", 400)
	})
}
