// Command compliance-loadgen is the load generator of the compliance benchmark: from its own
// process it calls GetCompliance over gRPC (mutual TLS, as the gateway) at a fixed rate for a
// while, open loop (a slow answer does not slow the next call; latency counts from each call's due time), and prints one JSON line with
// the number of calls, errors, the achieved rate and the p50, p99 and max latencies.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/mtls"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
)

// Result is the line the load generator prints.
type Result struct {
	Calls   int     `json:"calls"`
	Errors  int     `json:"errors"`
	Rate    float64 `json:"rate"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
	Seconds float64 `json:"seconds"`
	// MaxLateMs is how late the generator sent its latest call (its own stalls, counted in the
	// latencies as well).
	MaxLateMs float64 `json:"max_late_ms"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "compliance-loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "", "reporting gRPC address (required)")
	ca := flag.String("ca", "", "CA file")
	cert := flag.String("cert", "", "client (gateway) certificate file")
	key := flag.String("key", "", "client key file")
	tenant := flag.String("tenant", "acme", "tenant")
	rate := flag.Int("rate", 200, "calls per second")
	dur := flag.Duration("duration", 10*time.Second, "how long")
	flag.Parse()
	if *addr == "" {
		return fmt.Errorf("-addr: required")
	}
	if *rate <= 0 || *dur <= 0 {
		return fmt.Errorf("-rate and -duration: must be positive")
	}
	// The generator's own garbage collector must not show in the latencies it measures: a run
	// allocates a few tens of MB, so collect only above a bound.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(512 << 20)
	tc, err := mtls.Files{CA: *ca, Cert: *cert, Key: *key}.ClientConfig("localhost")
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := reportingv1.NewReportingServiceClient(conn)
	ctx := auth.OutgoingContext(context.Background(), &auth.Identity{Subject: "loadgen@provider", Roles: []auth.Role{auth.RoleOperator},
		CredentialID: "loadgen", CredentialKind: auth.KindAPIKey})
	// Warm the connection up.
	if _, err := client.GetCompliance(ctx, &reportingv1.GetComplianceRequest{Tenant: *tenant}); err != nil {
		return fmt.Errorf("first call: %w", err)
	}
	// Call i is due at start + i/rate: a call is sent at its due time whatever the previous
	// ones are doing, and its latency counts from the due time, so a stall of the generator or
	// of the server shows in the figures instead of delaying the calls behind it (coordinated
	// omission). How late the generator sent its calls is printed beside them.
	total := int(float64(*rate) * dur.Seconds())
	lat := make([]time.Duration, 0, total)
	var mu sync.Mutex
	errs := 0
	var late time.Duration
	var wg sync.WaitGroup
	every := time.Second / time.Duration(*rate)
	start := time.Now()
	for i := range total {
		due := start.Add(time.Duration(i) * every)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else {
			late = max(late, -d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := client.GetCompliance(ctx, &reportingv1.GetComplianceRequest{Tenant: *tenant})
			d := time.Since(due)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				return
			}
			lat = append(lat, d)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	res := Result{Calls: len(lat) + errs, Errors: errs, Rate: float64(len(lat)+errs) / took.Seconds(),
		P50Ms: q(0.50), P99Ms: q(0.99), MaxMs: q(1), Seconds: took.Seconds(), MaxLateMs: float64(late.Microseconds()) / 1000}
	return json.NewEncoder(os.Stdout).Encode(res)
}
