package adapters

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// RunFailures is the read model digests are built from: the failed instances of each run with
// their errors (hash "notifier:failures:<tenant>:<run>", field the instance), a projection of
// install.failed and snapshot.failed kept in a store.Store and rebuilt from the stream when the
// store is empty. The projection also reads run.completed, so that once its checkpoint
// ("notifier:failures-seq") has reached a run.completed event's sequence, every failure before
// it in the stream is in the model.
type RunFailures struct {
	st store.Store
}

// NewRunFailures returns the model kept in st.
func NewRunFailures(st store.Store) *RunFailures { return &RunFailures{st: st} }

const failuresSeqKey = "notifier:failures-seq"

func failuresKey(tenant, run string) string { return "notifier:failures:" + tenant + ":" + run }

type failureEntry struct {
	Stage  string `json:"stage"`
	Reason string `json:"reason"`
}

// Checkpoint returns the stream sequence the model has applied up to.
func (f *RunFailures) Checkpoint(ctx context.Context) (uint64, error) {
	v, found, err := f.st.Get(ctx, failuresSeqKey)
	if err != nil || !found {
		return 0, err
	}
	return strconv.ParseUint(string(v), 10, 64)
}

// Failures returns a run's failed instances, ordered by instance, at most limit, and how
// many failed at each stage ("install", "snapshot") in all.
func (f *RunFailures) Failures(ctx context.Context, tenant, run string, limit int) ([]domain.Failure, map[string]int, error) {
	raw, err := f.st.HGetAll(ctx, failuresKey(tenant, run))
	if err != nil {
		return nil, nil, fmt.Errorf("failures of run %s: %w", run, err)
	}
	out := make([]domain.Failure, 0, len(raw))
	byStage := map[string]int{}
	for inst, b := range raw {
		var e failureEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, nil, fmt.Errorf("failures of run %s: %s: %w", run, inst, err)
		}
		out = append(out, domain.Failure{InstanceID: inst, Stage: e.Stage, Reason: e.Reason})
		byStage[e.Stage]++
	}
	slices.SortFunc(out, func(a, b domain.Failure) int { return cmp.Compare(a.InstanceID, b.InstanceID) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, byStage, nil
}

// Projection returns the read model's projection.
func (f *RunFailures) Projection(name string) bus.ProjectionSpec {
	return bus.ProjectionSpec{
		Name: name,
		Subjects: []string{
			events.Pattern[*eventsv1.InstallFailed](),
			events.Pattern[*eventsv1.SnapshotFailed](),
			events.Pattern[*eventsv1.RunCompleted](),
		},
		Checkpoint: f.Checkpoint,
		Apply: func(ctx context.Context, ev *events.Event, _ bool) error {
			var run, inst string
			var e failureEntry
			switch m := ev.Data.(type) {
			case *eventsv1.InstallFailed:
				run, inst, e = m.GetRunId(), m.GetInstanceId(), failureEntry{Stage: "install", Reason: domain.OneLine(m.GetReason())}
			case *eventsv1.SnapshotFailed:
				run, inst, e = m.GetRunId(), m.GetInstanceId(), failureEntry{Stage: "snapshot", Reason: domain.OneLine(m.GetReason())}
			}
			if run != "" && inst != "" {
				b, _ := json.Marshal(e)
				if err := f.st.HSet(ctx, failuresKey(ev.Tenant, run), map[string][]byte{inst: b}); err != nil {
					return err
				}
			}
			return f.st.Set(ctx, failuresSeqKey, []byte(strconv.FormatUint(ev.Sequence, 10)))
		},
	}
}
