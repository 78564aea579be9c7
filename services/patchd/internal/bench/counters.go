package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// busCounterNames are the bus counters the bench prints: handler calls (a call beyond one per
// event is a redelivery or a retry), tracker checks and what the trackers released.
var busCounterNames = map[string][]string{
	"patchwave_bus_handled_total":          {"handler", "outcome"},
	"patchwave_bus_tracker_checks_total":   {"tracker", "outcome"},
	"patchwave_bus_tracker_outcomes_total": {"tracker", "outcome"},
}

// busCounters reads the bus counters of busCounterNames, summed over services, keyed
// "<metric> <label values>".
func busCounters(g prometheus.Gatherer) (map[string]float64, error) {
	fams, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		labels, ok := busCounterNames[f.GetName()]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			vals := make([]string, 0, len(labels))
			for _, want := range labels {
				for _, l := range m.GetLabel() {
					if l.GetName() == want {
						vals = append(vals, l.GetValue())
					}
				}
			}
			out[strings.TrimPrefix(f.GetName(), "patchwave_bus_")+" "+strings.Join(vals, " ")] += m.GetCounter().GetValue()
		}
	}
	return out, nil
}

// counterDelta is after less before, leaving out what did not move.
func counterDelta(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func printBusCounters(out io.Writer, c map[string]float64, instances int) {
	fmt.Fprintf(out, "\nbus counters during the waves (handler calls beyond one per event are redeliveries or retries)\n")
	for _, k := range slices.Sorted(maps.Keys(c)) {
		fmt.Fprintf(out, "  %-60s %9.0f (%.2f per instance)\n", k, c[k], c[k]/float64(max(1, instances)))
	}
}
