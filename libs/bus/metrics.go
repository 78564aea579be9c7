package bus

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	published       prometheus.Counter
	publishRetries  prometheus.Counter
	publishFailed   prometheus.Counter
	publishTimeouts prometheus.Counter
	handled         *prometheus.CounterVec
	handleSeconds   *prometheus.HistogramVec
	deadLettered    *prometheus.CounterVec
	projected       *prometheus.CounterVec
	groupRead       *prometheus.CounterVec

	deadLetterHookFailed *prometheus.CounterVec
	trackerHeld          *prometheus.GaugeVec
	trackerChecks        *prometheus.CounterVec
	trackerCheckSeconds  *prometheus.HistogramVec
	trackerOutcomes      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, service string) *metrics {
	labels := prometheus.Labels{"service": service}
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchwave_bus_published_total", Help: "Events acknowledged by JetStream.", ConstLabels: labels}),
		publishRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchwave_bus_publish_retries_total", Help: "Events sent again after a failed or timed-out attempt.", ConstLabels: labels}),
		publishFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchwave_bus_publish_failed_total", Help: "Events not stored after every attempt.", ConstLabels: labels}),
		publishTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patchwave_bus_publish_ack_timeouts_total", Help: "Publish attempts not acknowledged within PublishTimeout of their send.", ConstLabels: labels}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchwave_bus_handled_total", Help: "Handler calls by outcome (ok, error, permanent).", ConstLabels: labels},
			[]string{"handler", "outcome"}),
		handleSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "patchwave_bus_handle_seconds", Help: "Handler call duration.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"handler"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchwave_bus_dead_lettered_total", Help: "Messages sent to the dead-letter subject.", ConstLabels: labels},
			[]string{"handler"}),
		projected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchwave_bus_projected_total", Help: "Events applied to read models.", ConstLabels: labels},
			[]string{"projection"}),
		groupRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchwave_bus_projection_read_total", Help: "Messages read from the stream for projections (replays included), by group of projections sharing a consumer.", ConstLabels: labels},
			[]string{"projections"}),
		deadLetterHookFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchwave_bus_dead_letter_hook_failed_total", Help: "Dead-letter hooks that failed (the message is kept and retried).", ConstLabels: labels},
			[]string{"handler"}),
		trackerHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "patchwave_bus_tracker_held", Help: "Messages a tracker holds on this replica.", ConstLabels: labels},
			[]string{"tracker"}),
		trackerChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchwave_bus_tracker_checks_total", Help: "Tracker check calls by outcome (ok, error).", ConstLabels: labels},
			[]string{"tracker", "outcome"}),
		trackerCheckSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "patchwave_bus_tracker_check_seconds", Help: "Tracker check call duration.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"tracker"}),
		trackerOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patchwave_bus_tracker_outcomes_total", Help: "Held messages released by outcome (done, retry, dead_lettered).", ConstLabels: labels},
			[]string{"tracker", "outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.publishRetries, m.publishFailed, m.publishTimeouts, m.handled, m.handleSeconds, m.deadLettered, m.projected, m.groupRead,
			m.deadLetterHookFailed, m.trackerHeld, m.trackerChecks, m.trackerCheckSeconds, m.trackerOutcomes)
	}
	return m
}
