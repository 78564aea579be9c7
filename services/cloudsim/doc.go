// Package cloudsim is Patchwave's AWS API emulator: one HTTP endpoint that speaks the real wire
// protocols of EC2 (Query, XML), SSM (JSON 1.1), STS (Query, XML) and a minimal S3 (REST, path
// style), closely enough that unmodified aws-sdk-go-v2 clients and AWS's own command-line client
// work against it through an endpoint override.
//
// Requests are routed by the service named in the SigV4 credential scope of their
// Authorization header, and every signature is verified with the secret of its access key:
// the provider's long-lived key, or temporary credentials from AssumeRole, which scope every
// call to one account and to the region of the request.
//
// # Time
//
// Nothing in the world runs in the background (only the state directory's checkpoint writer,
// which changes nothing). Every asynchronous operation (snapshot, command invocation,
// reboot, replace-root-volume task, state change) has its whole course decided when it starts,
// and its state is computed from Config.Clock when it is read; effects on an instance (install
// results, a restored root volume, the end of a reboot) are applied, in time order, whenever the
// instance is read ("settled"). A test with a fake clock drives everything by advancing it, and
// pending operations cost nothing while nobody looks.
//
// # Use in process
//
//	srv, err := cloudsim.New(cloudsim.Config{Accounts: []cloudsim.AccountConfig{{
//		ID: "111111111111", Tenant: "acme", Instances: 300, Waves: 3}}})
//	srv.Start()
//	defer srv.Close()
//	key, secret := srv.ProviderCredentials()
//	acct, _ := srv.Account("111111111111") // RoleARN and ExternalID for AssumeRole
//	// aws.Config{BaseEndpoint: aws.String(srv.URL()), Credentials: static(key, secret), ...}
//
// The admin API (/_cloudsim/..., JSON, unsigned) and its Go equivalents (Stats, InjectFault,
// AddInstances, Instance) expose call counters and inject faults. See README.md.
package cloudsim
