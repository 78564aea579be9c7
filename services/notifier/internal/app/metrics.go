package app

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the notifier's figures.
type Metrics struct {
	attempts *prometheus.CounterVec
	queued   *prometheus.CounterVec
}

// NewMetrics registers the notifier's metrics on reg (nil: not registered anywhere); pending
// reports the deliveries waiting for an attempt.
func NewMetrics(reg prometheus.Registerer, pending func() float64) (*Metrics, error) {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "patchwave", Subsystem: "notifier", Name: "delivery_attempts_total",
			Help: "Delivery attempts by channel and outcome (sent, retry, dead)."}, []string{"channel", "outcome"}),
		queued: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "patchwave", Subsystem: "notifier", Name: "deliveries_queued_total",
			Help: "Deliveries queued by channel (a replayed event queues none)."}, []string{"channel"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.attempts, m.queued, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "patchwave", Subsystem: "notifier", Name: "deliveries_pending", Help: "Deliveries waiting for an attempt (this replica's view of the schedule).",
	}, pending)} {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return nil, err
		}
	}
	return m, nil
}
