package cloudsim_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
)

// awsCLI is AWS's own command-line client (Debian's awscli, installed by
// scripts/ensure-awscli.sh), run against the emulator with a throw-away HOME and config.
const awsCLI = "/usr/bin/aws"

type cli struct {
	t   *testing.T
	url string
	env []string
}

func newCLI(t *testing.T, srv *cloudsim.Server, key, secret, token string) *cli {
	t.Helper()
	if _, err := os.Stat(awsCLI); err != nil {
		t.Fatalf("%s is missing (run scripts/ensure-awscli.sh or make awscli): %v", awsCLI, err)
	}
	home := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(home, "config"), []byte("[default]\n"), 0o600))
	env := []string{"HOME=" + home, "PATH=/usr/bin:/bin", "AWS_CONFIG_FILE=" + filepath.Join(home, "config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"), "AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_ACCESS_KEY_ID=" + key, "AWS_SECRET_ACCESS_KEY=" + secret}
	if token != "" {
		env = append(env, "AWS_SESSION_TOKEN="+token)
	}
	return &cli{t: t, url: srv.URL(), env: env}
}

// run runs one command and decodes its JSON output.
func (c *cli) run(out any, args ...string) {
	c.t.Helper()
	full := append([]string{"--endpoint-url", c.url, "--region", region, "--output", "json"}, args...)
	cmd := exec.CommandContext(c.t.Context(), awsCLI, full...)
	cmd.Env = c.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(c.t, cmd.Run(), "aws %v\nstderr: %s", args, stderr.String())
	require.NoError(c.t, json.Unmarshal(stdout.Bytes(), out), "aws %v printed %s", args, stdout.String())
}

func TestAWSCommandLineClient(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(9)}})
	key, secret := srv.ProviderCredentials()
	acct, _ := srv.Account(acmeID)

	var assumed struct {
		Credentials struct{ AccessKeyID, SecretAccessKey, SessionToken string } `json:"Credentials"`
	}
	newCLI(t, srv, key, secret, "").run(&assumed, "sts", "assume-role", "--role-arn", acct.RoleARN,
		"--role-session-name", "cli-test", "--external-id", acct.ExternalID)
	cr := assumed.Credentials
	require.Regexp(t, `^ASIA`, cr.AccessKeyID)
	aws := newCLI(t, srv, cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken)

	var described struct {
		Reservations []struct {
			Instances []struct {
				InstanceID string `json:"InstanceId"`
				Tags       []struct{ Key, Value string }
			}
		}
	}
	aws.run(&described, "ec2", "describe-instances", "--filters", "Name=tag:PatchWave,Values=2")
	require.Len(t, described.Reservations, 3)
	id := described.Reservations[0].Instances[0].InstanceID
	for _, r := range described.Reservations {
		found := false
		for _, tag := range r.Instances[0].Tags {
			found = found || (tag.Key == "PatchWave" && tag.Value == "2")
		}
		require.True(t, found)
	}

	var snaps struct {
		Snapshots []struct {
			SnapshotID string `json:"SnapshotId"`
			State      string
			Tags       []struct{ Key, Value string }
		}
	}
	aws.run(&snaps, "ec2", "create-snapshots", "--instance-specification", "InstanceId="+id,
		"--tag-specifications", "ResourceType=snapshot,Tags=[{Key=patchwave:run,Value=run-cli}]")
	require.NotEmpty(t, snaps.Snapshots)
	require.Equal(t, "completed", snaps.Snapshots[0].State)
	require.Equal(t, "run-cli", snaps.Snapshots[0].Tags[0].Value)

	var sent struct {
		Command struct {
			CommandID string `json:"CommandId"`
			Status    string
		}
	}
	aws.run(&sent, "ssm", "send-command", "--document-name", "AWS-RunPatchBaseline", "--instance-ids", id,
		"--parameters", "Operation=Scan,RebootOption=NoReboot", "--comment", "from the CLI")
	require.NotEmpty(t, sent.Command.CommandID)

	var invs struct {
		CommandInvocations []struct {
			InstanceID     string `json:"InstanceId"`
			Status         string
			CommandPlugins []struct{ Name, Output string }
		}
	}
	aws.run(&invs, "ssm", "list-command-invocations", "--command-id", sent.Command.CommandID, "--details")
	require.Len(t, invs.CommandInvocations, 1)
	require.Equal(t, id, invs.CommandInvocations[0].InstanceID)
	require.Equal(t, "Success", invs.CommandInvocations[0].Status)
	require.Contains(t, invs.CommandInvocations[0].CommandPlugins[0].Output, "Patch operation: Scan")

	var task struct {
		ReplaceRootVolumeTask struct {
			ReplaceRootVolumeTaskID string `json:"ReplaceRootVolumeTaskId"`
			InstanceID              string `json:"InstanceId"`
			TaskState               string
		}
	}
	aws.run(&task, "ec2", "create-replace-root-volume-task", "--instance-id", id, "--snapshot-id", snaps.Snapshots[0].SnapshotID)
	require.Equal(t, id, task.ReplaceRootVolumeTask.InstanceID)
	require.Equal(t, "succeeded", task.ReplaceRootVolumeTask.TaskState)
	require.Regexp(t, `^replacevol-`, task.ReplaceRootVolumeTask.ReplaceRootVolumeTaskID)
}
