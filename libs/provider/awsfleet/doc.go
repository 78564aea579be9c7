// Package awsfleet is the AWS adapter behind provider.Fleet: EC2 for instances, snapshots,
// restores, reboots and health, SSM (AWS-RunPatchBaseline) for installations and scans, S3 for
// install lists, STS for the tenants' roles. Pointed at cloudsim (Config.Endpoint) it runs
// unchanged against the emulator.
//
// # Accounts and credentials
//
// Config.Accounts resolves a tenant's accounts. For each (account, region) the adapter builds
// one client set, once; the client sets of an account share one aws.CredentialsCache over
// stscreds.AssumeRoleProvider (the account's role with its external id, called with the
// provider's own credentials), which refreshes them about five minutes before they expire. A target that does
// not name one of the tenant's own accounts and regions is provider.ErrNotFound, which is what
// keeps tenants apart; snapshot sets and restore tasks also carry a patchwave:tenant tag and
// are only read back with it. A role that cannot be assumed (wrong external id, unknown role)
// is provider.ErrAccessDenied naming the call, the role and the account.
//
// # Rate limits, retries and errors
//
// Every attempt of every AWS call first waits on Config.Limiter under the key
// "aws/<account>/<service>" with the service's Limit (EC2, SSM, S3 and STS have their own
// budgets, as on AWS), so a 100,000-instance wave paces itself below the account's API rate
// instead of being throttled. With a ratelimit.Redis limiter every process shares the budget.
// A wait that would outlast the context's deadline fails at once with provider.ErrThrottled.
//
// Throttling, 5xx and transport errors are retried by the SDK's standard retryer
// (Config.Retry: attempts and maximum backoff; its client-side retry quota is off, the limiter
// paces instead). What still fails is an *Error naming the operation, the account and AWS's
// code, wrapping the provider sentinel: throttling codes ErrThrottled (Retryable), 5xx and
// transport errors Retryable, AccessDenied/UnauthorizedOperation/AuthFailure ErrAccessDenied,
// InvalidParameter*/ValidationException/MissingParameter ErrInvalidArgument, *.NotFound and
// SSM's InvalidInstanceId/InvalidCommandId ErrNotFound, IncorrectInstanceState
// ErrInstanceNotRunning. Failures of one item of a batch are in that item's result.
//
// # Discovery
//
// DescribeInstances per target with a tag filter (tag:<key>=value, or tag-key), a state filter
// (running; with IncludeStopped every state but terminated), 1,000 per page, one page callback
// per page. The page's agents come from DescribeInstanceInformation (50 instance ids per call,
// in parallel); an instance with no registered agent is reported with provider.AgentNone. The
// OS family is the instance's OSFamily tag, else derived from the agent's platform (OSFamily).
//
// # Snapshot sets and the creation race
//
// A set is the EBS snapshots of one CreateSnapshots call (all attached volumes,
// crash-consistent, CopyTagsFromSource off), tagged patchwave:tenant, :run, :instance,
// :snapshot-set (provider.SnapshotSetID), :attempt (random per creating batch) and the
// request's tags; the root volume's snapshot is tagged patchwave:root afterwards (CreateTags
// cannot tell volumes apart in one call). CreateSnapshots first looks for the sets by their
// set tag (one DescribeSnapshots per 200 sets), so a retry never takes a second set.
//
// CreateSnapshots has no client token, so two creators racing for one set (a redelivered job
// while the first attempt is still in its call) can both create. The adapter closes the race
// by looking again after creating: when a set has snapshots of more than one attempt, every
// creator keeps the same one, the attempt whose earliest snapshot started first (ties: the
// smaller attempt id), and deletes the others. The last creator to finish always sees both
// attempts, so one set remains. Readers (GetSnapshots, RestoreFromSnapshot) apply the same
// rule, so they agree with the creators even before the duplicate is deleted. Callers refer to
// a set by its id; its volume snapshot ids can change once, when a racing duplicate is
// resolved in favour of the other creator. On AWS, DescribeSnapshots is eventually consistent:
// a look right after creating may miss the other creator's snapshots; the next CreateSnapshots
// for the key (any redelivery) resolves the duplicate then, and readers never see two sets.
//
// # Installations and install lists
//
// Install sends AWS-RunPatchBaseline (Operation=Install) with at most 50 instances per
// SendCommand, one command per (run, baseline, patch list, reboot option, timeout). The
// pinned baseline's patches are the install list: an InstallOverrideList YAML object
// (InstallListYAML) in an S3 bucket of the tenant's account and region (Config.InstallLists),
// put once per baseline and patch-list digest (HeadObject before PutObject; the bucket is
// created when missing). We chose install lists over SSM patch baselines because the
// baseline is ours (certified, pinned per cycle): an override list installs exactly those
// patches, with no baseline resource to create, version and clean up in every tenant account,
// and the same list serves Scan. The command's comment is "patchwave run=<run>", which
// FindInstallations matches (ListCommandInvocations per instance, filtered to the document)
// to find an installation started before a crash. RebootOption: if-required is RebootIfNeeded,
// never is NoReboot, always is NoReboot and the installer reboots after a successful install.
// PatchStates reads one instance's patches (DescribeInstancePatches); PatchSummaries the counts
// per state of many (DescribeInstancePatchStates, 50 a call), which is how the installer
// avoids a per-patch read of every cleanly installed instance.
//
// # How answers are decoded
//
// CreateSnapshots' answer (every volume snapshot with its tags) is read to its end and dropped
// in place of the SDK's XML deserializer (adapterEC2Decoders), which then never runs: the race
// check's DescribeSnapshots reads the sets anyway, and decoding it cost more CPU than sending
// the call. Errors are decoded as usual.
//
// The successful answers of DescribeInstances, DescribeSnapshots and DescribeInstanceStatus
// are decoded by lean decoders into the SDK's own output types (leanEC2Decoders), 7 to 10
// times faster than the SDK's XML deserializer; CreateSnapshots has one too (every member of
// the SDK's SnapshotInfo), for a client that reads the answer. Anything they do not handle (an
// element the SDK knows and they do not, such as an instance's license list, XML outside the
// subset EC2 answers with, a value the SDK would fail on) goes to the SDK's decoder, as does
// every error answer. The outputs are the SDK's, deeply equal (see the tests).
//
// CreateSnapshots requests are written by a lean serializer (leanEC2Serializers), the SDK's
// query body byte for byte without its url.Values map; inputs with members it does not write go
// to the SDK's serializer.
//
// The EC2 and SSM clients drop the SDK steps that never act for the adapter (recursion
// detection outside Lambda, the request logger without a log mode, disableHTTPS, the
// interceptor steps without interceptors) and take their endpoint from a cache of the SDK's
// resolver's answers (sdkstack.go); the requests sent are the same.
//
// # Restores
//
// CreateReplaceRootVolumeTask from the set's root-volume snapshot, with a ClientToken derived
// from (tenant, RestoreKey) (RestoreClientToken), so EC2's own idempotency returns the first
// task to a repeated request; GetRestores reads DescribeReplaceRootVolumeTasks.
//
// # Metrics
//
// patchwave_aws_calls_total{service,operation,outcome}, patchwave_aws_retries_total,
// patchwave_aws_throttles_total, patchwave_aws_limiter_wait_seconds{service} and
// patchwave_aws_snapshot_set_races_total, registered with Config.Registerer.
package awsfleet
