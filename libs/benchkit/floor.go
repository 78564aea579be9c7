// Package benchkit holds what Patchwave's bench commands share: the raw JetStream floor a whole
// wave is compared with, and process figures such as peak RSS. Nothing here asserts a time; it
// measures and reports.
package benchkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FloorConfig describes a raw nats.go pipeline: Instances messages seeded on stage 0, then relayed
// through Stages relay stages that all run at once, as Patchwave's stages do. Each relay fetches a
// batch, decodes every message, publishes one output per input asynchronously (with a message id,
// as the bus does), waits for the publish acks and then acks its inputs: the fastest safe way
// PERFORMANCE.md knows. The pipeline moves Instances*(Stages+1) events in all.
type FloorConfig struct {
	// JS is the JetStream context; the stream must exist. Required.
	JS jetstream.JetStream
	// Stream holds SubjectPrefix.>. Required.
	Stream string
	// SubjectPrefix is the subject prefix of the floor's own subjects, unique per run, e.g.
	// "patch.floor-1". Required.
	SubjectPrefix string
	// Instances is how many messages enter the pipeline. Required, > 0.
	Instances int
	// Stages is how many relay stages follow the seeding. Required, > 0.
	Stages int
	// PayloadBytes pads each message's data to about this size. Optional, default 512.
	PayloadBytes int
	// Batch is the fetch size of every relay. Optional, default 500.
	Batch int
}

// FloorResult is what a floor run measured.
type FloorResult struct {
	// Wall is the time from the first seed publish to the last relay's last ack.
	Wall time.Duration
	// Events is the number of messages published (seed and relays).
	Events int
}

// EventsPerSecond is Events over Wall.
func (r FloorResult) EventsPerSecond() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return float64(r.Events) / r.Wall.Seconds()
}

func (c *FloorConfig) setDefaults() {
	if c.PayloadBytes == 0 {
		c.PayloadBytes = 512
	}
	if c.Batch == 0 {
		c.Batch = 500
	}
}

// Validate reports every problem with the configuration.
func (c FloorConfig) Validate() error {
	var errs []error
	if c.JS == nil {
		errs = append(errs, errors.New("JS: required"))
	}
	if c.Stream == "" || c.SubjectPrefix == "" {
		errs = append(errs, errors.New("Stream, SubjectPrefix: required"))
	}
	if c.Instances <= 0 || c.Stages <= 0 {
		errs = append(errs, fmt.Errorf("Instances %d, Stages %d: must be > 0", c.Instances, c.Stages))
	}
	if c.PayloadBytes < 0 || c.Batch < 0 {
		errs = append(errs, errors.New("PayloadBytes, Batch: must not be negative"))
	}
	return errors.Join(errs...)
}

// envelope is a CloudEvents-shaped document, so the floor encodes and decodes as much JSON as
// the bus does.
type envelope struct {
	SpecVersion string          `json:"specversion"`
	ID          string          `json:"id"`
	Source      string          `json:"source"`
	Type        string          `json:"type"`
	Subject     string          `json:"subject"`
	Time        time.Time       `json:"time"`
	Data        json.RawMessage `json:"data"`
}

type floorData struct {
	Run      string `json:"runId"`
	Instance string `json:"instanceId"`
	Stage    int    `json:"stage"`
	Pad      string `json:"pad"`
}

// Floor runs the pipeline once and returns its figures. The consumers it creates are deleted
// when it returns.
func Floor(ctx context.Context, cfg FloorConfig) (FloorResult, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return FloorResult{}, fmt.Errorf("floor config: %w", err)
	}
	subject := func(stage int) string { return cfg.SubjectPrefix + ".s" + strconv.Itoa(stage) }
	pad := strings.Repeat("x", max(0, cfg.PayloadBytes-200))
	encode := func(stage int, instance string) (*nats.Msg, error) {
		data, err := json.Marshal(floorData{Run: "run-floor", Instance: instance, Stage: stage, Pad: pad})
		if err != nil {
			return nil, err
		}
		id := subject(stage) + "/run-floor/" + instance
		doc, err := json.Marshal(envelope{SpecVersion: "1.0", ID: id, Source: "/patchwave/floor",
			Type: "floor.v1.Stage" + strconv.Itoa(stage), Subject: "run-floor/" + instance, Time: time.Now().UTC(), Data: data})
		if err != nil {
			return nil, err
		}
		m := nats.NewMsg(subject(stage))
		m.Data = doc
		m.Header.Set(nats.MsgIdHdr, id)
		return m, nil
	}

	consumers := make([]jetstream.Consumer, cfg.Stages)
	names := make([]string, cfg.Stages)
	for i := range cfg.Stages {
		names[i] = strings.NewReplacer(".", "_", "*", "_", ">", "_").Replace(cfg.SubjectPrefix) + "_relay" + strconv.Itoa(i+1)
		c, err := cfg.JS.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
			Durable: names[i], FilterSubject: subject(i), AckPolicy: jetstream.AckExplicitPolicy,
			MaxAckPending: 4 * cfg.Batch, AckWait: time.Minute,
		})
		if err != nil {
			return FloorResult{}, fmt.Errorf("floor consumer %s: %w", names[i], err)
		}
		consumers[i] = c
	}
	defer func() {
		for _, n := range names {
			_ = cfg.JS.DeleteConsumer(context.WithoutCancel(ctx), cfg.Stream, n)
		}
	}()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	begin := time.Now()
	var wg sync.WaitGroup
	for i, c := range consumers {
		wg.Go(func() {
			if err := relay(ctx, cfg, c, i+1, encode); err != nil {
				cancel(fmt.Errorf("relay %d: %w", i+1, err))
			}
		})
	}
	if err := seed(ctx, cfg, encode); err != nil {
		cancel(fmt.Errorf("seed: %w", err))
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return FloorResult{}, err
	}
	return FloorResult{Wall: time.Since(begin), Events: cfg.Instances * (cfg.Stages + 1)}, nil
}

func seed(ctx context.Context, cfg FloorConfig, encode func(int, string) (*nats.Msg, error)) error {
	futures := make([]jetstream.PubAckFuture, 0, cfg.Batch)
	for i := range cfg.Instances {
		m, err := encode(0, "i-"+strconv.Itoa(i))
		if err != nil {
			return err
		}
		f, err := cfg.JS.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute))
		if err != nil {
			return err
		}
		futures = append(futures, f)
		if len(futures) == cap(futures) {
			if err := waitAcks(ctx, futures); err != nil {
				return err
			}
			futures = futures[:0]
		}
	}
	return waitAcks(ctx, futures)
}

// relay moves cfg.Instances messages from stage-1 to stage.
func relay(ctx context.Context, cfg FloorConfig, c jetstream.Consumer, stage int, encode func(int, string) (*nats.Msg, error)) error {
	for moved := 0; moved < cfg.Instances; {
		batch, err := c.Fetch(cfg.Batch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		var inputs []jetstream.Msg
		var futures []jetstream.PubAckFuture
		for msg := range batch.Messages() {
			var env envelope
			if err := json.Unmarshal(msg.Data(), &env); err != nil {
				return fmt.Errorf("decode: %w", err)
			}
			var d floorData
			if err := json.Unmarshal(env.Data, &d); err != nil {
				return fmt.Errorf("decode data: %w", err)
			}
			out, err := encode(stage, d.Instance)
			if err != nil {
				return err
			}
			f, err := cfg.JS.PublishMsgAsync(out, jetstream.WithStallWait(time.Minute))
			if err != nil {
				return err
			}
			futures = append(futures, f)
			inputs = append(inputs, msg)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		if err := waitAcks(ctx, futures); err != nil {
			return err
		}
		for _, m := range inputs {
			if err := m.Ack(); err != nil {
				return err
			}
		}
		moved += len(inputs)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
	return nil
}

func waitAcks(ctx context.Context, futures []jetstream.PubAckFuture) error {
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(30 * time.Second):
			return errors.New("no publish ack within 30s")
		}
	}
	return nil
}
