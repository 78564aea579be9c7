package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Delivery is what one consumer of the tenant stream was delivered during the waves.
type Delivery struct {
	// Consumer is the consumer's name: a handler's or tracker's durable
	// ("<service>_<handler>"), or a service's projections' ordered consumer
	// ("<service>_projections_<random>_<n>").
	Consumer string
	// Filters are the consumer's filter subjects.
	Filters []string
	// Delivered counts the messages delivered, redeliveries included.
	Delivered uint64
}

// consumerDeliveries reads every consumer of the stream's delivered count.
func consumerDeliveries(ctx context.Context, stream jetstream.Stream) (map[string]Delivery, error) {
	out := map[string]Delivery{}
	l := stream.ListConsumers(ctx)
	for ci := range l.Info() {
		filters := ci.Config.FilterSubjects
		if ci.Config.FilterSubject != "" {
			filters = []string{ci.Config.FilterSubject}
		}
		out[ci.Name] = Delivery{Consumer: ci.Name, Filters: filters, Delivered: ci.Delivered.Consumer}
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	return out, nil
}

// deliveriesSince is what each consumer was delivered after before was taken; a consumer
// created since counts from zero. A consumer deleted in between (an ordered consumer that
// was reset) is not counted.
func deliveriesSince(before, after map[string]Delivery) []Delivery {
	var out []Delivery
	for name, a := range after {
		if b, ok := before[name]; ok {
			a.Delivered -= min(a.Delivered, b.Delivered)
		}
		if a.Delivered > 0 {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(x, y Delivery) int { return strings.Compare(x.Consumer, y.Consumer) })
	return out
}

// reportDeliveries prints the deliveries per consumer and per instance.
func reportDeliveries(out io.Writer, ds []Delivery, instances int) {
	fmt.Fprintf(out, "\ndeliveries during the waves (consumers of the tenant stream, redeliveries included)\n")
	var total uint64
	for _, d := range ds {
		f := strings.Join(d.Filters, " ")
		if len(f) > 70 {
			f = f[:67] + "..."
		}
		fmt.Fprintf(out, "  %-52s %9d %6.2f  %s\n", d.Consumer, d.Delivered, float64(d.Delivered)/float64(max(instances, 1)), f)
		total += d.Delivered
	}
	fmt.Fprintf(out, "  %-52s %9d %6.2f per instance\n", "total", total, float64(total)/float64(max(instances, 1)))
}
