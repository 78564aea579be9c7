package adapters

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	libdesign "github.com/patchwave/patchwave/libs/design"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

// DesignKV is the service design's repository in the JetStream KV bucket libs/design names:
// every Put is a KV Create (revision 0) or Update (the expected revision), so a write never
// overwrites one it did not see. A write of two keys (a tenant's document and the service
// request it applies) is one JetStream atomic batch whose two messages each carry the
// expected last revision of their key: the server stores both or neither.
type DesignKV struct {
	kv jetstream.KeyValue
	nc *nats.Conn
}

var _ design.Repository = (*DesignKV)(nil)

// OpenDesignKV creates the bucket if it does not exist (or updates its configuration), allows
// atomic batches on its stream, and returns the repository.
func OpenDesignKV(ctx context.Context, js jetstream.JetStream, replicas int) (*DesignKV, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, libdesign.BucketConfig(replicas))
	// Replicas starting together race to create the bucket: the one that loses finds the
	// stream created (and already changed to allow batches) under it, and updates it instead.
	for attempt := 0; errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt < 5; attempt++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
		kv, err = js.CreateOrUpdateKeyValue(ctx, libdesign.BucketConfig(replicas))
	}
	if err != nil {
		return nil, fmt.Errorf("design bucket %s: %w", libdesign.Bucket, err)
	}
	s, err := js.Stream(ctx, kvStream)
	if err != nil {
		return nil, fmt.Errorf("design bucket %s: %w", libdesign.Bucket, err)
	}
	if cfg := s.CachedInfo().Config; !cfg.AllowAtomicPublish {
		cfg.AllowAtomicPublish = true
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("design bucket %s: allow atomic batches: %w", libdesign.Bucket, err)
		}
	}
	return &DesignKV{kv: kv, nc: js.Conn()}, nil
}

// kvStream is the stream behind the bucket, and kvSubject the subject prefix of its keys.
const (
	kvStream  = "KV_" + libdesign.Bucket
	kvSubject = "$KV." + libdesign.Bucket + "."
)

// Tenant implements design.Repository.
func (d *DesignKV) Tenant(ctx context.Context, tenant string) (*typesv1.TenantDesign, uint64, error) {
	doc := &typesv1.TenantDesign{}
	rev, ok, err := d.get(ctx, libdesign.TenantKey(tenant), doc)
	if !ok {
		return nil, rev, err
	}
	return doc, rev, nil
}

// PutTenant implements design.Repository.
func (d *DesignKV) PutTenant(ctx context.Context, tenant string, doc *typesv1.TenantDesign, rev uint64) (uint64, error) {
	return d.put(ctx, libdesign.TenantKey(tenant), doc, rev)
}

// Global implements design.Repository.
func (d *DesignKV) Global(ctx context.Context) (*typesv1.GlobalDesign, uint64, error) {
	doc := &typesv1.GlobalDesign{}
	rev, ok, err := d.get(ctx, libdesign.KeyGlobal, doc)
	if !ok {
		return nil, rev, err
	}
	return doc, rev, nil
}

// PutGlobal implements design.Repository.
func (d *DesignKV) PutGlobal(ctx context.Context, doc *typesv1.GlobalDesign, rev uint64) (uint64, error) {
	return d.put(ctx, libdesign.KeyGlobal, doc, rev)
}

// Request implements design.Repository.
func (d *DesignKV) Request(ctx context.Context, tenant, id string) (*typesv1.ServiceRequest, uint64, error) {
	r := &typesv1.ServiceRequest{}
	rev, ok, err := d.get(ctx, libdesign.RequestKey(tenant, id), r)
	if !ok {
		return nil, rev, err
	}
	return r, rev, nil
}

// PutRequest implements design.Repository.
func (d *DesignKV) PutRequest(ctx context.Context, r *typesv1.ServiceRequest, rev uint64) (uint64, error) {
	return d.put(ctx, libdesign.RequestKey(r.GetTenant(), r.GetRequestId()), r, rev)
}

// get reads key into m; false (and no error) when the key does not exist or was deleted.
func (d *DesignKV) get(ctx context.Context, key string, m proto.Message) (uint64, bool, error) {
	e, err := d.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("read %s: %w", key, err)
	}
	if err := libdesign.Unmarshal(e.Value(), m); err != nil {
		return 0, false, fmt.Errorf("read %s at revision %d: %w", key, e.Revision(), err)
	}
	return e.Revision(), true, nil
}

// put writes m at key if the key's last revision is rev (0: the key must not exist).
func (d *DesignKV) put(ctx context.Context, key string, m proto.Message, rev uint64) (uint64, error) {
	b, err := libdesign.Marshal(m)
	if err != nil {
		return 0, err
	}
	var next uint64
	if rev == 0 {
		next, err = d.kv.Create(ctx, key, b)
	} else {
		next, err = d.kv.Update(ctx, key, b, rev)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, fmt.Errorf("write %s based on revision %d: %w", key, rev, design.ErrConflict)
	case err != nil:
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	return next, nil
}

// PutTenantAndRequest implements design.Repository with one atomic batch of two messages.
func (d *DesignKV) PutTenantAndRequest(ctx context.Context, doc *typesv1.TenantDesign, docRev uint64, r *typesv1.ServiceRequest, reqRev uint64) (uint64, uint64, error) {
	docKey := libdesign.TenantKey(r.GetTenant())
	reqKey := libdesign.RequestKey(r.GetTenant(), r.GetRequestId())
	docData, err := libdesign.Marshal(doc)
	if err != nil {
		return 0, 0, err
	}
	reqData, err := libdesign.Marshal(r)
	if err != nil {
		return 0, 0, err
	}
	last, err := d.batch(ctx, []batchWrite{{docKey, docData, docRev}, {reqKey, reqData, reqRev}})
	if err != nil {
		return 0, 0, fmt.Errorf("write %s and %s: %w", docKey, reqKey, err)
	}
	// A batch is stored in one piece: its messages have consecutive sequences.
	return last - 1, last, nil
}

type batchWrite struct {
	key  string
	data []byte
	rev  uint64
}

// batch publishes writes as one atomic batch (JetStream ADR-50: Nats-Batch-Id,
// Nats-Batch-Sequence, Nats-Batch-Commit on the last message, whose reply is the batch's ack)
// and returns the sequence of the last message. Every message expects its key's last revision.
func (d *DesignKV) batch(ctx context.Context, writes []batchWrite) (uint64, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return 0, err
	}
	batchID := hex.EncodeToString(id[:])
	for i, w := range writes {
		m := nats.NewMsg(kvSubject + w.key)
		m.Data = w.data
		m.Header.Set("Nats-Batch-Id", batchID)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.rev, 10))
		if i < len(writes)-1 {
			if err := d.nc.PublishMsg(m); err != nil {
				return 0, err
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		resp, err := d.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return 0, err
		}
		var ack struct {
			Error *jetstream.APIError `json:"error,omitempty"`
			Seq   uint64              `json:"seq"`
			Count int                 `json:"count"`
		}
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return 0, fmt.Errorf("batch ack: %w", err)
		}
		if ack.Error != nil {
			if ack.Error.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || ack.Error.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant {
				return 0, fmt.Errorf("%w: %s", design.ErrConflict, ack.Error.Description)
			}
			return 0, ack.Error
		}
		if ack.Count != len(writes) {
			return 0, fmt.Errorf("batch ack: %d messages stored, want %d", ack.Count, len(writes))
		}
		return ack.Seq, nil
	}
	return 0, errors.New("batch: nothing to write")
}

// AuditEntry is one revision of a key of the design bucket, as the audit relay reads it.
type AuditEntry struct {
	Key      string
	Revision uint64
	Value    []byte
	// Deleted is a KV delete or purge marker (the scheduler writes tombstones instead, so
	// these come only from outside tools).
	Deleted bool
}

// AuditConsumer is the durable consumer of the audit relay.
const AuditConsumer = "scheduler_design_audit"

// AuditFeed reads every revision of the design bucket, in order, through a durable consumer
// shared by the scheduler's replicas: the outbox of the audit trail. A revision is acknowledged
// only once its handler succeeded, so one whose event was not published (a crash between the
// write and the publish) is handed out again when any replica runs next.
type AuditFeed struct {
	js jetstream.JetStream
	// retry is the redelivery delay of a revision whose handler failed.
	retry time.Duration
}

// NewAuditFeed returns the feed of the bucket OpenDesignKV created.
func NewAuditFeed(js jetstream.JetStream, retry time.Duration) *AuditFeed {
	return &AuditFeed{js: js, retry: retry}
}

// Run hands every revision to handle, one at a time in revision order, until ctx is done.
func (f *AuditFeed) Run(ctx context.Context, handle func(context.Context, AuditEntry) error) error {
	stream := kvStream
	cons, err := f.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       AuditConsumer,
		Description:   "scheduler: publishes the audit event of every revision of the service design",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       10 * time.Second,
		// One at a time, so events follow revisions even across replicas.
		MaxAckPending: 1,
		MaxDeliver:    -1,
	})
	if err != nil {
		return fmt.Errorf("audit consumer on %s: %w", stream, err)
	}
	// One message per fetch, handled (or handed back) before the next: nothing is ever left
	// delivered but unacknowledged, which would hold up every relay (one message in flight)
	// until AckWait.
	for {
		batch, err := cons.Fetch(1, jetstream.FetchContext(ctx))
		switch {
		case ctx.Err() != nil:
			return nil //nolint:nilerr // stopping is not a failure: the fetch ends because ctx is done
		case err != nil:
			return fmt.Errorf("audit consumer: %w", err)
		}
		for msg := range batch.Messages() {
			if err := f.relay(ctx, msg, handle); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("audit consumer: %w", err)
		}
	}
}

// relay hands one revision to handle and acknowledges it, or hands it back.
func (f *AuditFeed) relay(ctx context.Context, msg jetstream.Msg, handle func(context.Context, AuditEntry) error) error {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return nil
	}
	op := msg.Headers().Get("KV-Operation")
	e := AuditEntry{
		Key: strings.TrimPrefix(msg.Subject(), kvSubject), Revision: meta.Sequence.Stream,
		Value: msg.Data(), Deleted: op == "DEL" || op == "PURGE",
	}
	if err := handle(ctx, e); err != nil {
		if ctx.Err() != nil {
			// Stopping: hand the revision back at once, so the next relay does not wait.
			_ = msg.Nak()
			return nil
		}
		_ = msg.NakWithDelay(f.retry)
		return nil
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		return fmt.Errorf("audit consumer: ack revision %d: %w", e.Revision, err)
	}
	return nil
}
