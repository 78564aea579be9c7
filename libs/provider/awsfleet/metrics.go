package awsfleet

import (
	"context"
	"errors"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the adapter's Prometheus metrics. Labels are service and operation (and the
// outcome), never the account or the instance, so their number stays small.
type metrics struct {
	calls     *prometheus.CounterVec
	retries   *prometheus.CounterVec
	throttles *prometheus.CounterVec
	wait      *prometheus.HistogramVec
	races     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchwave_aws_calls_total",
			Help: "AWS API calls by service, operation and outcome (ok, or the AWS error code after retries).",
		}, []string{"service", "operation", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchwave_aws_retries_total",
			Help: "Attempts of AWS API calls beyond the first, by service and operation.",
		}, []string{"service", "operation"}),
		throttles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchwave_aws_throttles_total",
			Help: "AWS API attempts refused by throttling (RequestLimitExceeded, ThrottlingException, ...).",
		}, []string{"service", "operation"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "patchwave_aws_limiter_wait_seconds",
			Help:    "Time AWS API attempts waited on the per-account rate limiter, by service.",
			Buckets: []float64{0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30},
		}, []string{"service"}),
		races: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchwave_aws_snapshot_set_races_total",
			Help: "Duplicate snapshot sets taken by racing creators and deleted (the first by start time is kept).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.calls, err = register(reg, m.calls); err != nil {
		return nil, err
	}
	if m.retries, err = register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.throttles, err = register(reg, m.throttles); err != nil {
		return nil, err
	}
	if m.wait, err = register(reg, m.wait); err != nil {
		return nil, err
	}
	if m.races, err = register(reg, m.races); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under its name (several
// adapters, say one per service of patchd, share one registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// middleware returns the SDK stack option every client gets: per call it counts the outcome and
// the retries; per attempt (after the retryer, before signing) it waits on the account's rate
// limiter and counts throttling.
//
// The two middlewares are built once per client, not per call (the SDK runs its stack options
// on every call): they hold no per-call state, and the limiter key and the wait histogram of
// the service are looked up once. The retries are counted from the attempts the SDK's retryer
// records in the call's metadata (retry.GetAttemptResults), not by a counter of our own put in
// the call's context: that was three allocations per call.
func (f *Fleet) middleware(account, service string) func(*middleware.Stack) error {
	key := "aws/" + account + "/" + service
	limits := f.cfg.Limits.of(service)
	wait := f.metrics.wait.WithLabelValues(service)
	perCall := middleware.InitializeMiddlewareFunc("PatchwaveCall",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			op := awsmiddleware.GetOperationName(ctx)
			outcome := "ok"
			if err != nil {
				outcome = errorCode(err)
				if outcome == "" {
					outcome = "error"
				}
			}
			f.metrics.calls.WithLabelValues(service, op, outcome).Inc()
			if attempts, ok := retry.GetAttemptResults(md); ok && len(attempts.Results) > 1 {
				f.metrics.retries.WithLabelValues(service, op).Add(float64(len(attempts.Results) - 1))
			}
			return out, md, err
		})
	perAttempt := middleware.FinalizeMiddlewareFunc("PatchwaveAttempt",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			waited, err := f.cfg.Limiter.Wait(ctx, key, limits)
			wait.Observe(waited.Seconds())
			if err != nil {
				return middleware.FinalizeOutput{}, middleware.Metadata{}, err
			}
			out, md, err := next.HandleFinalize(ctx, in)
			if err != nil && isThrottle(errorCode(err)) {
				f.metrics.throttles.WithLabelValues(service, awsmiddleware.GetOperationName(ctx)).Inc()
			}
			return out, md, err
		})
	return func(stack *middleware.Stack) error {
		if err := stack.Initialize.Add(perCall, middleware.After); err != nil {
			return err
		}
		return stack.Finalize.Insert(perAttempt, "Retry", middleware.After)
	}
}
