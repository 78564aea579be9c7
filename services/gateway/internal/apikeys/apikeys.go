// Package apikeys is the gateway's store of API keys, in a JetStream KV bucket shared by every
// gateway replica, with an in-memory copy kept by a watch so that checking a key costs no
// round trip.
//
// A key is "pwk_<id>_<secret>": id is 20 hex digits (the time it was made, then random, so ids
// sort by age), secret 32 random bytes in base64url. Only the SHA-256 of the whole key is
// stored, and compared in constant time; the key itself is answered once, by Create. Every key
// expires; a revoked key keeps its record (who revoked it, when, why) and is refused from then
// on, on every replica as soon as its watch sees the change (milliseconds). The last use of a
// key is recorded at most once per Config.LastUseInterval, by a background flush, never by the
// request that used it.
package apikeys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/kvwatch"
)

// Bucket is the KV bucket of API keys; a key's record is under "keys.<id>".
const Bucket = "patchwave-credentials"

// Prefix starts every API key.
const Prefix = "pwk_"

// Config configures a Store.
type Config struct {
	// JetStream holds the bucket. Required.
	JetStream jetstream.JetStream
	// Replicas of the bucket. Optional, default 1 (3 on a cluster).
	Replicas int
	// DefaultTTL is a key's lifetime when its creator names none. Optional, default 90 days.
	DefaultTTL time.Duration
	// MaxTTL bounds a key's lifetime. Optional, default 365 days.
	MaxTTL time.Duration
	// LastUseInterval is how often at most a key's last use is written. Optional, default 1m.
	LastUseInterval time.Duration
	// Clock. Optional, default time.Now.
	Clock func() time.Time
	// Logger. Optional, default discards.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DefaultTTL == 0 {
		c.DefaultTTL = 90 * 24 * time.Hour
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = 365 * 24 * time.Hour
	}
	if c.LastUseInterval == 0 {
		c.LastUseInterval = time.Minute
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.JetStream == nil {
		errs = append(errs, errors.New("JetStream: required"))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("Replicas %d: must be from 1 to 5", c.Replicas))
	}
	if c.DefaultTTL <= 0 || c.MaxTTL <= 0 || c.DefaultTTL > c.MaxTTL {
		errs = append(errs, fmt.Errorf("DefaultTTL %s and MaxTTL %s: must be positive, the default at most the maximum", c.DefaultTTL, c.MaxTTL))
	}
	if c.LastUseInterval < 0 {
		errs = append(errs, errors.New("LastUseInterval: must not be negative"))
	}
	return errors.Join(errs...)
}

// Record is a key as stored: everything but the key itself.
type Record struct {
	ID           string      `json:"id"`
	Tenant       string      `json:"tenant,omitempty"`
	Name         string      `json:"name"`
	Roles        []auth.Role `json:"roles"`
	Subject      string      `json:"subject"`
	Hash         string      `json:"sha256"`
	CreatedBy    string      `json:"createdBy"`
	CreateTime   time.Time   `json:"createTime"`
	ExpireTime   time.Time   `json:"expireTime"`
	RevokeTime   *time.Time  `json:"revokeTime,omitempty"`
	RevokedBy    string      `json:"revokedBy,omitempty"`
	RevokeReason string      `json:"revokeReason,omitempty"`
	LastUseTime  *time.Time  `json:"lastUseTime,omitempty"`
}

// State is where a key is in its life at now.
func (r Record) State(now time.Time) string {
	switch {
	case r.RevokeTime != nil:
		return "revoked"
	case !now.Before(r.ExpireTime):
		return "expired"
	}
	return "active"
}

// Identity is the identity a call with the key acts as.
func (r Record) Identity() *auth.Identity {
	return &auth.Identity{
		Subject: r.Subject, Tenant: r.Tenant, Roles: slices.Clone(r.Roles),
		CredentialID: r.ID, CredentialKind: auth.KindAPIKey, Expires: r.ExpireTime,
	}
}

// Store is the API key store.
type Store struct {
	cfg Config
	kv  jetstream.KeyValue
	log *slog.Logger

	mu     sync.RWMutex
	keys   map[string]*Record
	rev    map[string]uint64
	used   map[string]time.Time // last use recorded or queued, per key
	queue  map[string]time.Time // uses to write
	loaded chan struct{}
	once   sync.Once
}

// Open creates the bucket if it does not exist and returns the store. Call Run to keep the
// in-memory copy; Verify refuses everything until its first load.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("api keys config: %w", err)
	}
	kv, err := cfg.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "Patchwave API keys (hashed), by the gateway",
		History: 1, Storage: jetstream.FileStorage, Replicas: cfg.Replicas, MaxValueSize: 16 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("api keys: bucket %s: %w", Bucket, err)
	}
	return &Store{
		cfg: cfg, kv: kv, log: cfg.Logger, keys: map[string]*Record{}, rev: map[string]uint64{},
		used: map[string]time.Time{}, queue: map[string]time.Time{}, loaded: make(chan struct{}),
	}, nil
}

// Run watches the bucket and writes queued uses every LastUseInterval (at least every second)
// until ctx is done; a watch that ends is started again.
func (s *Store) Run(ctx context.Context) error {
	go s.flushLoop(ctx)
	for {
		if err := s.watch(ctx); ctx.Err() == nil {
			s.log.WarnContext(ctx, "api key watch ended; watching again", "error", err)
		} else {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (s *Store) flushLoop(ctx context.Context) {
	every := min(max(s.cfg.LastUseInterval/2, 100*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.FlushUses(ctx); err != nil && ctx.Err() == nil {
				s.log.WarnContext(ctx, "recording api key uses", "error", err)
			}
		}
	}
}

func (s *Store) watch(ctx context.Context) error {
	w, err := s.kv.WatchFiltered(ctx, []string{"keys.>"})
	if err != nil {
		return fmt.Errorf("watch %s: %w", Bucket, err)
	}
	return kvwatch.Follow(ctx, w, func() { s.once.Do(func() { close(s.loaded) }) }, s.apply)
}

func (s *Store) apply(e jetstream.KeyValueEntry) {
	id := strings.TrimPrefix(e.Key(), "keys.")
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Revision() < s.rev[id] {
		return
	}
	s.rev[id] = e.Revision()
	if e.Operation() != jetstream.KeyValuePut {
		delete(s.keys, id)
		return
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		s.log.Error("api key record does not decode; the key is refused", "key", e.Key(), "error", err)
		delete(s.keys, id)
		return
	}
	s.keys[id] = &r
}

// WaitLoaded blocks until the in-memory copy holds the bucket's keys.
func (s *Store) WaitLoaded(ctx context.Context) error {
	select {
	case <-s.loaded:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("api keys not loaded: %w", ctx.Err())
	}
}

// Loaded reports whether the in-memory copy holds the bucket's keys.
func (s *Store) Loaded() bool {
	select {
	case <-s.loaded:
		return true
	default:
		return false
	}
}

// CreateRequest asks for a key.
type CreateRequest struct {
	// Tenant the key is bound to; empty for a provider key.
	Tenant string
	// Name of the key: 1-64 lower-case letters, digits, '-' or '.'.
	Name string
	// Roles, at least one; tenant roles for a tenant key, provider roles for a provider key.
	Roles []auth.Role
	// TTL is the lifetime; 0 is Config.DefaultTTL.
	TTL time.Duration
	// CreatedBy is the creator's subject.
	CreatedBy string
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,63}$`)

// Create makes a key and returns its record and the key itself, which nothing keeps.
func (s *Store) Create(ctx context.Context, req CreateRequest) (Record, string, error) {
	var v apierr.Violations
	if req.Tenant != "" {
		if err := events.ValidateTenant(req.Tenant); err != nil || req.Tenant == auth.ProviderTenant {
			v.Add("tenant", fmt.Sprintf("%q is not a tenant id", req.Tenant))
		}
	}
	if !namePattern.MatchString(req.Name) {
		v.Add("name", fmt.Sprintf("must be 1-64 lower-case letters, digits, '-' or '.', starting with a letter or digit, got %q", req.Name))
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = s.cfg.DefaultTTL
	}
	if ttl < time.Minute || ttl > s.cfg.MaxTTL {
		v.Add("ttl", fmt.Sprintf("must be from 1m to %s, got %s", FormatTTL(s.cfg.MaxTTL), ttl))
	}
	now := s.cfg.Clock().UTC().Truncate(time.Millisecond)
	id := newID(now)
	scope := req.Tenant
	if scope == "" {
		scope = auth.ProviderTenant
	}
	r := Record{
		ID: id, Tenant: req.Tenant, Name: req.Name, Roles: req.Roles, Subject: req.Name + "@" + scope,
		CreatedBy: req.CreatedBy, CreateTime: now, ExpireTime: now.Add(ttl),
	}
	if len(req.Roles) == 0 {
		v.Add("roles", "at least one role is required")
	} else if err := r.Identity().Validate(); err != nil {
		v.Add("roles", err.Error())
	}
	if err := v.Err(); err != nil {
		return Record{}, "", err
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	key := Prefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret)
	r.Hash = hashOf(key)
	b, err := json.Marshal(r)
	if err != nil {
		return Record{}, "", fmt.Errorf("api key: %w", err)
	}
	rev, err := s.kv.Create(ctx, "keys."+id, b)
	if err != nil {
		return Record{}, "", fmt.Errorf("api key: store: %w", err)
	}
	s.remember(id, rev, &r)
	return r, key, nil
}

// remember puts a record this replica wrote into the in-memory copy at once, so the key works
// on the next request (the watch brings the same revision a moment later).
func (s *Store) remember(id string, rev uint64, r *Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev >= s.rev[id] {
		s.rev[id] = rev
		cp := *r
		s.keys[id] = &cp
	}
}

func newID(now time.Time) string {
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}

func hashOf(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// ParseKey returns the id of a key of the form pwk_<id>_<secret>, or false.
func ParseKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, Prefix)
	if !ok {
		return "", false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 20 || secret == "" {
		return "", false
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", false
	}
	return id, true
}

// Errors of Verify. Their messages are for the caller (the WWW-Authenticate description).
var (
	ErrUnknownKey = errors.New("the API key is not known")
	ErrExpired    = errors.New("the API key has expired")
	ErrRevoked    = errors.New("the API key has been revoked")
	ErrNotLoaded  = errors.New("the API keys are not loaded yet")
)

// Verify checks key against the in-memory copy and returns its record; a good key's use is
// queued for recording.
func (s *Store) Verify(key string) (*Record, error) {
	select {
	case <-s.loaded:
	default:
		return nil, ErrNotLoaded
	}
	id, ok := ParseKey(key)
	if !ok {
		return nil, ErrUnknownKey
	}
	now := s.cfg.Clock()
	s.mu.RLock()
	r := s.keys[id]
	s.mu.RUnlock()
	if r == nil || subtle.ConstantTimeCompare([]byte(r.Hash), []byte(hashOf(key))) != 1 {
		return nil, ErrUnknownKey
	}
	switch r.State(now) {
	case "revoked":
		return nil, ErrRevoked
	case "expired":
		return nil, ErrExpired
	}
	s.noteUse(r, now)
	cp := *r
	return &cp, nil
}

// VerifyStored checks key against the bucket itself, not the in-memory copy (before Run, as
// at bootstrap), and returns its record when it is active.
func (s *Store) VerifyStored(ctx context.Context, key string) (Record, error) {
	id, ok := ParseKey(key)
	if !ok {
		return Record{}, ErrUnknownKey
	}
	e, err := s.kv.Get(ctx, "keys."+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, ErrUnknownKey
	}
	if err != nil {
		return Record{}, fmt.Errorf("api key %s: %w", id, err)
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return Record{}, fmt.Errorf("api key %s: decode: %w", id, err)
	}
	if subtle.ConstantTimeCompare([]byte(r.Hash), []byte(hashOf(key))) != 1 {
		return Record{}, ErrUnknownKey
	}
	switch r.State(s.cfg.Clock()) {
	case "revoked":
		return Record{}, ErrRevoked
	case "expired":
		return Record{}, ErrExpired
	}
	return r, nil
}

// MaxTTL is the longest lifetime a key may have.
func (s *Store) MaxTTL() time.Duration { return s.cfg.MaxTTL }

// noteUse queues a use when the key's last recorded (or queued) use is older than the
// interval.
func (s *Store) noteUse(r *Record, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.used[r.ID]
	if r.LastUseTime != nil && r.LastUseTime.After(last) {
		last = *r.LastUseTime
	}
	if !last.IsZero() && now.Sub(last) < s.cfg.LastUseInterval {
		return
	}
	s.used[r.ID] = now
	s.queue[r.ID] = now
}

// FlushUses writes the queued uses: one compare-and-set per key used since its last record.
func (s *Store) FlushUses(ctx context.Context) error {
	s.mu.Lock()
	queue := s.queue
	s.queue = map[string]time.Time{}
	s.mu.Unlock()
	var errs []error
	for id, at := range queue {
		if err := s.update(ctx, id, func(r *Record) bool {
			if r.LastUseTime != nil && !at.After(*r.LastUseTime) {
				return false
			}
			t := at.UTC().Truncate(time.Millisecond)
			r.LastUseTime = &t
			return true
		}); err != nil {
			errs = append(errs, fmt.Errorf("key %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// update reads a record, changes it with fn (which reports whether it changed anything) and
// writes it back if the revision is still the one read, retrying a few times.
func (s *Store) update(ctx context.Context, id string, fn func(*Record) bool) error {
	for attempt := 0; ; attempt++ {
		e, err := s.kv.Get(ctx, "keys."+id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("%w: API key %s", apierr.ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		var r Record
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		if !fn(&r) {
			return nil
		}
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		rev, err := s.kv.Update(ctx, "keys."+id, b, e.Revision())
		if err == nil {
			s.remember(id, rev, &r)
			return nil
		}
		if attempt >= 4 || !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
	}
}

// Get returns the record of key id in tenant ("" for provider keys); another tenant's key is
// not found.
func (s *Store) Get(ctx context.Context, tenant, id string) (Record, error) {
	e, err := s.kv.Get(ctx, "keys."+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return Record{}, fmt.Errorf("%w: API key %s", apierr.ErrNotFound, id)
	}
	if err != nil {
		return Record{}, fmt.Errorf("api key %s: %w", id, err)
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return Record{}, fmt.Errorf("api key %s: decode: %w", id, err)
	}
	if r.Tenant != tenant {
		return Record{}, fmt.Errorf("%w: API key %s", apierr.ErrNotFound, id)
	}
	return r, nil
}

// Revoke revokes key id of tenant; revoking a revoked key answers it unchanged.
func (s *Store) Revoke(ctx context.Context, tenant, id, by, reason string) (Record, error) {
	if len(reason) > 1000 {
		var v apierr.Violations
		v.Add("reason", fmt.Sprintf("must be at most 1000 characters, got %d", len(reason)))
		return Record{}, v.Err()
	}
	if _, err := s.Get(ctx, tenant, id); err != nil {
		return Record{}, err
	}
	now := s.cfg.Clock().UTC().Truncate(time.Millisecond)
	if err := s.update(ctx, id, func(r *Record) bool {
		if r.RevokeTime != nil {
			return false
		}
		r.RevokeTime, r.RevokedBy, r.RevokeReason = &now, by, reason
		return true
	}); err != nil {
		return Record{}, err
	}
	return s.Get(ctx, tenant, id)
}

// List returns a page of tenant's keys ("" for the provider keys), newest first, from the
// in-memory copy. The token is the last id of the previous page.
func (s *Store) List(tenant string, pageSize int, pageToken string) ([]Record, string, error) {
	var v apierr.Violations
	switch {
	case pageSize == 0:
		pageSize = 50
	case pageSize < 1 || pageSize > 500:
		v.Add("pageSize", fmt.Sprintf("must be from 1 to 500, got %d", pageSize))
	}
	if pageToken != "" {
		if _, ok := ParseKey(Prefix + pageToken + "_x"); !ok {
			v.Add("pageToken", "must be the nextPageToken of the previous page")
		}
	}
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	s.mu.RLock()
	var all []Record
	for _, r := range s.keys {
		if r.Tenant == tenant && (pageToken == "" || r.ID < pageToken) {
			all = append(all, *r)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(all, func(a, b Record) int { return strings.Compare(b.ID, a.ID) })
	if len(all) <= pageSize {
		return all, "", nil
	}
	return all[:pageSize], all[pageSize-1].ID, nil
}

// ParseTTL reads a lifetime such as "720h", "90d" or "1d12h".
func ParseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	orig := s
	var days time.Duration
	if i := strings.Index(s, "d"); i > 0 {
		n, err := strconv.Atoi(s[:i])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a duration such as 90d or 720h", orig)
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration such as 90d or 720h", orig)
	}
	return days + d, nil
}

// FormatTTL writes d in days when it is whole days ("365d"), else as Go does.
func FormatTTL(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}
