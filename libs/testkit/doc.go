// Package testkit starts the real servers Patchwave tests run against: an
// embedded nats-server with JetStream and a redis-server process, each private
// to one test, on a random loopback port, with its data in t.TempDir(), and
// stopped by t.Cleanup.
//
// A test that cannot start what it needs fails with t.Fatal; it never skips.
// StartRedis needs a redis-server binary on PATH: scripts/ensure-redis.sh
// installs one (make test runs it).
package testkit
