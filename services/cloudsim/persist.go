package cloudsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// store keeps the world in a state directory as generations of two files: checkpoint-<gen>.jsonl
// holds every entity as of the start of generation gen, and log-<gen>.jsonl every change since,
// one JSON line per changed entity (the entity's whole new value, or a deletion). A call costs
// one appended line per entity it changed; only a checkpoint writes everything.
//
// A call encodes its records under the server's exclusive lock (the entities cannot change while
// they are encoded, and the records queue in the order of the changes) and writes them after
// releasing it (write): whichever call writes first takes every record queued so far, so calls
// that changed the world at once share one write, and no call holds the world's lock across a
// system call. A call returns only when its records were written.
//
// The checkpoint is fuzzy, so that writing one does not stop the world. When the logs hold
// enough records (due: CheckpointEvery, or by default checkpointGrowth times as many as the
// newest checkpoint has entities, see dueAfter), the call that crossed the threshold, still under the exclusive
// lock, writes what is queued to the current log gen and starts appending to a new log-<gen+1>
// (startCheckpoint); that is all it does. A background writer (one at a time) then encodes the
// entities into checkpoint-<gen+1>.jsonl.tmp, checkpointChunk entities at a time under the
// server's shared lock, which it gives up between chunks so that changes go on; reads share the
// lock with it and never wait for it. It walks the world's entity maps themselves, keeping each
// map's iterator across the chunks: Go's range over a map yields every entry that is in the map
// from the start to the end of the walk, skips one deleted before it is reached and may or may
// not yield one added meanwhile, whatever is changed between two steps of the walk. So the
// checkpoint holds every entity that existed when log gen+1 started and was not deleted since,
// each with its value at some moment after that start, and perhaps some entities created since.
// Every change after that start, deletions included, is in log gen+1, as whole values, and the
// last record of an entity wins: checkpoint gen+1 and then log gen+1 give exactly the world.
// Before the checkpoint is renamed into place, the writer makes sure that log gen+1 holds (and
// has synced) every change queued up to its last chunk, so that the checkpoint never shows a
// change its log could lose; then it syncs the checkpoint, renames it, and only then removes
// generation gen's files.
//
// Loading reads the newest checkpoint C (a checkpoint exists only once it is complete: it is
// renamed into place) and replays log-C, log-C+1, ... in order: a crash before the rename leaves
// log-<gen+1> beside checkpoint-gen, and both logs are needed. Appends go on in the highest log.
// Only the highest log can end in a torn line (a crash mid-write; every log before it was
// written to the end before the next was created), and that line is dropped.
type store struct {
	dir   string
	every int // Config.CheckpointEvery; 0: due follows the world's size (dueAfter)
	gen   int // the generation of the log that appends go to
	// records counts the log records since the newest checkpoint that was started, and due is
	// how many start the next one.
	records, due int
	// minRecords is the fewest records that start a checkpoint when every is 0
	// (minCheckpointRecords; a test may lower it).
	minRecords int
	// lastEntities is about how many entities the newest checkpoint holds (or will hold, while
	// it is written).
	lastEntities int
	// scratch is encode's buffer, kept between calls (encode runs under the server's lock).
	scratch bytes.Buffer

	// mu is the server's lock, which guards w; the checkpoint writer reads w under its shared
	// side.
	mu     *sync.RWMutex
	w      *world
	logger *slog.Logger
	// ckptDone is closed when the checkpoint writer last started ends (nil: none started);
	// afterChunk, if set, is called by the writer after each chunk, without the lock (a test
	// hook). Both are guarded by mu.
	ckptDone   chan struct{}
	afterChunk func()

	qmu     sync.Mutex // guards pending and queued; taken under the server's lock or by a writer
	pending []byte     // records encoded and not yet written, in the order of the changes
	queued  uint64     // bytes ever queued

	wmu     sync.Mutex // held while writing the log or replacing it
	log     *os.File
	written uint64 // bytes ever written: the records up to there reached the OS
	spare   []byte // the buffer of the last write, reused as the next pending
}

// minCheckpointRecords and checkpointGrowth say when a checkpoint is due if
// Config.CheckpointEvery is 0: once the logs hold minCheckpointRecords records and
// checkpointGrowth times as many records as the newest checkpoint has entities. A checkpoint
// encodes and writes the whole world, so with a fixed count a large world is written again and
// again (in a 100,000-instance wave, checkpoints every 200,000 records were a fifth of the
// emulator's CPU, and with twice the checkpoint's entities, two checkpoints in the wave were
// still 15%). Tied to the world's size, checkpoints cost at most one entity's encoding per
// checkpointGrowth records logged; a restart replays at most about checkpointGrowth times the
// world's entities from the logs, and the state directory holds about 1 + checkpointGrowth
// times the world.
const (
	minCheckpointRecords = 200000
	checkpointGrowth     = 4
)

// dueAfter is how many log records start the next checkpoint after one of entities entities:
// CheckpointEvery if set, else checkpointGrowth times entities and at least minRecords.
func (st *store) dueAfter(entities int) int {
	if st.every > 0 {
		return st.every
	}
	return max(st.minRecords, checkpointGrowth*entities)
}

// checkpointChunk is how many entities the checkpoint writer encodes per taking of the lock: a
// change waits for at most one chunk (a few milliseconds for 1,000 instances).
const checkpointChunk = 1000

// record is one line of a checkpoint or log.
type record struct {
	Kind    string          `json:"k"`
	ID      string          `json:"id"`
	Value   json.RawMessage `json:"v,omitempty"`
	Deleted bool            `json:"d,omitempty"`
}

var stateFileName = regexp.MustCompile(`^(checkpoint|log)-([0-9]{8})\.jsonl$`)

// openStore loads the state directory into w; mu is the lock that guards w from then on.
func openStore(dir string, every int, w *world, mu *sync.RWMutex, logger *slog.Logger) (*store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cloudsim state dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cloudsim state dir: %w", err)
	}
	st := &store{dir: dir, every: every, minRecords: minCheckpointRecords, mu: mu, w: w, logger: logger}
	st.due = st.dueAfter(0)
	checkpoint := 0
	logs := map[int]bool{}
	for _, e := range entries {
		if m := stateFileName.FindStringSubmatch(e.Name()); m != nil {
			n, _ := strconv.Atoi(m[2])
			if m[1] == "checkpoint" {
				checkpoint = max(checkpoint, n)
			} else {
				logs[n] = true
			}
		}
	}
	if checkpoint > 0 {
		n, _, err := st.replay(st.path("checkpoint", checkpoint), w, false)
		if err != nil {
			return nil, err
		}
		st.lastEntities = n
		st.due = st.dueAfter(n)
		last := checkpoint
		for n := range logs {
			last = max(last, n)
		}
		st.gen = last
		// A checkpoint of an older version may have no log yet (a crash before it was made).
		for g := checkpoint; g <= last && logs[last]; g++ {
			if !logs[g] {
				return nil, fmt.Errorf("cloudsim state: %s is missing (checkpoint-%08d needs every log from its own up to log-%08d)",
					filepath.Base(st.path("log", g)), checkpoint, last)
			}
			n, valid, err := st.replay(st.path("log", g), w, g == last)
			if err != nil {
				return nil, err
			}
			st.records += n
			// Drop a torn last line so that the next append starts on a line of its own.
			if fi, err := os.Stat(st.path("log", g)); g == last && err == nil && fi.Size() > valid {
				if err := os.Truncate(st.path("log", g), valid); err != nil {
					return nil, fmt.Errorf("cloudsim state log: %w", err)
				}
			}
		}
	} else {
		checkpoint, st.gen = 1, 1
		// An empty checkpoint marks generation 1 as started.
		if err := writeFileSync(st.path("checkpoint", 1), nil); err != nil {
			return nil, err
		}
	}
	st.removeOlder(checkpoint)
	f, err := os.OpenFile(st.path("log", st.gen), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cloudsim state log: %w", err)
	}
	st.log = f
	return st, nil
}

func (st *store) path(kind string, gen int) string {
	return filepath.Join(st.dir, fmt.Sprintf("%s-%08d.jsonl", kind, gen))
}

// replay applies the records of one file and returns how many there were and the length of
// the complete lines; only the newest log may end in a torn line (mayTear).
func (st *store) replay(path string, w *world, mayTear bool) (n int, valid int64, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("cloudsim state: %w", err)
	}
	for len(data) > 0 {
		var line []byte
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if mayTear {
				break // torn last line: the write it belongs to never completed
			}
			return 0, 0, fmt.Errorf("cloudsim state %s: truncated", path)
		}
		line, data = data[:i], data[i+1:]
		valid += int64(i + 1)
		if len(line) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(line, &r); err != nil {
			return 0, 0, fmt.Errorf("cloudsim state %s line %d: %w", path, n+1, err)
		}
		if err := applyRecord(w, r); err != nil {
			return 0, 0, fmt.Errorf("cloudsim state %s line %d: %w", path, n+1, err)
		}
		n++
	}
	return n, valid, nil
}

func decodeInto[T any](r record, m map[string]*T) error {
	if r.Deleted {
		delete(m, r.ID)
		return nil
	}
	v := new(T)
	if err := json.Unmarshal(r.Value, v); err != nil {
		return err
	}
	m[r.ID] = v
	return nil
}

func applyRecord(w *world, r record) error {
	switch r.Kind {
	case "meta":
		return json.Unmarshal(r.Value, &w.meta)
	case "account":
		return decodeInto(r, w.accounts)
	case "session":
		return decodeInto(r, w.sessions)
	case "instance":
		return decodeInto(r, w.instances)
	case "snapshot":
		return decodeInto(r, w.snapshots)
	case "command":
		return decodeInto(r, w.commands)
	case "task":
		return decodeInto(r, w.tasks)
	case "bucket":
		if err := decodeInto(r, w.buckets); err != nil {
			return err
		}
		if r.Deleted {
			delete(w.objects, r.ID)
		} else if w.objects[r.ID] == nil {
			w.objects[r.ID] = map[string]*object{}
		}
		return nil
	case "invocation":
		cmd, inst, _ := strings.Cut(r.ID, "/")
		k := invKey{cmd, inst}
		if r.Deleted {
			delete(w.invs, k)
			return nil
		}
		v := &invocation{}
		if err := json.Unmarshal(r.Value, v); err != nil {
			return err
		}
		w.invs[k] = v
		return nil
	case "object":
		b, key, _ := strings.Cut(r.ID, "/")
		if w.objects[b] == nil {
			w.objects[b] = map[string]*object{}
		}
		if r.Deleted {
			delete(w.objects[b], key)
			return nil
		}
		o := &object{}
		if err := json.Unmarshal(r.Value, o); err != nil {
			return err
		}
		w.objects[b][key] = o
		return nil
	}
	return fmt.Errorf("unknown record kind %q", r.Kind)
}

func encodeRecord(b *bytes.Buffer, k entityKey, v any) error {
	// The line is the JSON of record{k.Kind, k.ID, json(v), v == nil}, written in one pass:
	// marshalling the value first and then the record would encode it twice (the record's
	// RawMessage is validated and compacted again), and this runs on every mutation. The
	// entities changed on most calls are appended without reflection (appendValue).
	line := b.AvailableBuffer()
	line = append(line, `{"k":`...)
	line = appendJSONStringHTML(line, k.Kind)
	line = append(line, `,"id":`...)
	line = appendJSONStringHTML(line, k.ID)
	if v == nil {
		line = append(line, `,"d":true}`+"\n"...)
		b.Write(line)
		return nil
	}
	line = append(line, `,"v":`...)
	if line, ok := appendValue(line, v); ok {
		line = append(line, "}\n"...)
		b.Write(line)
		return nil
	}
	start := b.Len()
	b.Write(line)
	if err := json.NewEncoder(b).Encode(v); err != nil { // Encode ends the value with "\n"
		b.Truncate(start)
		return fmt.Errorf("encode %s %s: %w", k.Kind, k.ID, err)
	}
	b.Truncate(b.Len() - 1)
	b.WriteString("}\n")
	return nil
}

// maxScratch is the largest flush buffer kept between flushes.
const maxScratch = 1 << 20

// flush encodes the world's changed entities and writes them to the log at once: for the start
// and Close, which hold the server's lock for the whole of it.
func (st *store) flush(w *world) error {
	end, err := st.encode(w)
	if err != nil {
		return err
	}
	return st.write(end)
}

// encode queues the records of the world's changed entities (run under the server's exclusive
// lock) and starts a checkpoint when the logs are long enough; end is the position write must
// reach for these records to be in the log.
func (st *store) encode(w *world) (end uint64, err error) {
	if len(w.dirty) == 0 {
		return st.queuedEnd(), nil
	}
	b := &st.scratch
	b.Reset()
	for k, v := range w.dirty {
		if err := encodeRecord(b, k, v); err != nil {
			return 0, err
		}
	}
	n := len(w.dirty)
	w.resetDirty()
	st.qmu.Lock()
	st.pending = append(st.pending, b.Bytes()...)
	st.queued += uint64(b.Len())
	end = st.queued
	st.qmu.Unlock()
	if b.Cap() > maxScratch {
		st.scratch = bytes.Buffer{} // one large flush does not keep its buffer for good
	}
	st.records += n
	if st.records >= st.due && !st.checkpointing() {
		return end, st.startCheckpoint()
	}
	return end, nil
}

func (st *store) queuedEnd() uint64 {
	st.qmu.Lock()
	defer st.qmu.Unlock()
	return st.queued
}

// write makes sure the log holds every record queued up to end: it writes what is pending
// unless another call's write already took it. It runs without the server's lock.
func (st *store) write(end uint64) error {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	if st.written >= end {
		return nil
	}
	return st.writePending()
}

// writePending writes every queued record; wmu is held.
func (st *store) writePending() error {
	st.qmu.Lock()
	buf := st.pending
	if len(buf) == 0 {
		st.qmu.Unlock()
		return nil
	}
	// The pending buffer is swapped with the one the last write used (done: wmu is held), so
	// calls queue into one buffer while the other is written.
	st.pending = st.spare[:0]
	st.qmu.Unlock()
	st.written += uint64(len(buf))
	st.spare = buf
	if cap(buf) > maxScratch {
		st.spare = nil
	}
	if st.log == nil {
		return errors.New("cloudsim state log: closed")
	}
	if _, err := st.log.Write(buf); err != nil {
		return fmt.Errorf("cloudsim state log: %w", err)
	}
	return nil
}

// checkpointing tells whether the checkpoint writer is running; the server's lock is held.
func (st *store) checkpointing() bool {
	if st.ckptDone == nil {
		return false
	}
	select {
	case <-st.ckptDone:
		return false
	default:
		return true
	}
}

// startCheckpoint ends the current log and starts the writer of the next generation's
// checkpoint in the background. It runs under the server's exclusive lock and does no more than
// one write of what is queued and the creation of the new log.
func (st *store) startCheckpoint() error {
	next := st.gen + 1
	st.wmu.Lock()
	// The records queued so far are changes from before the checkpoint's start: they belong to
	// the old log. They are written before the new log exists, so that only the newest log can
	// end in a torn line.
	if err := st.writePending(); err != nil {
		st.wmu.Unlock()
		return err
	}
	f, err := os.OpenFile(st.path("log", next), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		st.wmu.Unlock()
		return fmt.Errorf("cloudsim state log: %w", err)
	}
	old := st.log
	st.log, st.gen = f, next
	st.wmu.Unlock()
	_ = old.Close() // its records reached the OS with the writes
	st.records = 0
	// The checkpoint will hold about the entities there are now (and those created while it is
	// written, which the next logs hold too).
	st.lastEntities = st.w.entities()
	st.due = st.dueAfter(st.lastEntities)
	done, afterChunk := make(chan struct{}), st.afterChunk
	st.ckptDone = done
	go func() {
		defer close(done)
		if err := st.checkpoint(next, afterChunk); err != nil {
			// The state is still whole on disk (the older checkpoint and the logs since); the
			// next checkpoint is tried when another due records are logged.
			st.logger.Error("cloudsim: writing the checkpoint failed", "generation", next, "err", err)
		}
	}()
	return nil
}

// checkpoint writes checkpoint-<gen> (see store) and then removes the older generations. It runs
// in its own goroutine, taking the server's shared lock for each chunk of entities.
func (st *store) checkpoint(gen int, afterChunk func()) error {
	path := st.path("checkpoint", gen)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("cloudsim checkpoint: %w", err)
	}
	cw := &checkpointWriter{mu: st.mu, f: f, afterChunk: afterChunk}
	st.mu.RLock()
	err = cw.world(st.w)
	// Every change the checkpoint saw was queued before end (still under the lock).
	end := st.queuedEnd()
	st.mu.RUnlock()
	if err == nil {
		err = cw.flush()
	}
	if err == nil {
		err = st.syncLog(end)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("cloudsim checkpoint: %w", cerr)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := syncDir(st.dir); err != nil {
		return err
	}
	st.removeOlder(gen)
	return nil
}

// syncLog writes the records queued up to end to the log if no call did yet and syncs the log.
func (st *store) syncLog(end uint64) error {
	st.wmu.Lock()
	var err error
	if st.written < end {
		err = st.writePending()
	}
	// The log is replaced only by startCheckpoint (which waits for this checkpoint to end) and
	// closed only by close (which waits too): it can be synced without wmu, so that writes go on.
	f := st.log
	st.wmu.Unlock()
	if err != nil {
		return err
	}
	if f == nil {
		return errors.New("cloudsim state log: closed")
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("cloudsim state log: %w", err)
	}
	return nil
}

// checkpointWriter encodes the world into a checkpoint file, chunk by chunk; mu's shared side is
// held while it encodes, and given up between chunks. The first error stops it (err).
type checkpointWriter struct {
	mu         *sync.RWMutex
	f          *os.File
	buf        bytes.Buffer
	n          int
	afterChunk func()
	err        error
}

// world encodes every entity. The world's entity maps are changed but never replaced, so each
// range below goes on over the live map after the lock was given up and taken again.
func (cw *checkpointWriter) world(w *world) error {
	cw.add("meta", "", &w.meta)
	str := func(id string) string { return id }
	checkpointMap(cw, "account", w.accounts, str)
	checkpointMap(cw, "session", w.sessions, str)
	checkpointMap(cw, "instance", w.instances, str)
	checkpointMap(cw, "snapshot", w.snapshots, str)
	checkpointMap(cw, "command", w.commands, str)
	checkpointMap(cw, "invocation", w.invs, func(k invKey) string { return k.CommandID + "/" + k.InstanceID })
	checkpointMap(cw, "task", w.tasks, str)
	checkpointMap(cw, "bucket", w.buckets, str)
	for bname, objs := range w.objects {
		for key, o := range objs {
			// A bucket's object map is replaced when the bucket is deleted and made again; an
			// object of the old map is then not the world's (and its deletion is in the log).
			if cw.err == nil && w.objects[bname][key] == o {
				cw.add("object", bname+"/"+key, o)
			}
		}
	}
	return cw.err
}

func checkpointMap[K comparable, V any](cw *checkpointWriter, kind string, m map[K]*V, id func(K) string) {
	for k, v := range m {
		if cw.err != nil {
			return
		}
		cw.add(kind, id(k), v)
	}
}

// add encodes one entity, and after every checkpointChunk entities writes them and lets the
// calls waiting for the lock in.
func (cw *checkpointWriter) add(kind, id string, v any) {
	if cw.err != nil {
		return
	}
	if cw.err = encodeRecord(&cw.buf, entityKey{kind, id}, v); cw.err != nil {
		return
	}
	cw.n++
	if cw.n%checkpointChunk != 0 {
		return
	}
	cw.mu.RUnlock()
	cw.err = cw.flush()
	if cw.afterChunk != nil {
		cw.afterChunk()
	}
	cw.mu.RLock()
}

// flush writes the encoded chunk to the file (without the lock).
func (cw *checkpointWriter) flush() error {
	_, err := cw.f.Write(cw.buf.Bytes())
	cw.buf.Reset()
	if err != nil {
		return fmt.Errorf("cloudsim checkpoint: %w", err)
	}
	return nil
}

// writeFileSync writes a file through a synced temporary file and a rename.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("cloudsim checkpoint: %w", err)
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("cloudsim checkpoint: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cloudsim checkpoint: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir syncs a directory, so that a rename in it is on disk before the files it replaces
// are removed.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cloudsim state dir: %w", err)
	}
	serr := d.Sync()
	cerr := d.Close()
	if err := errors.Join(serr, cerr); err != nil {
		return fmt.Errorf("cloudsim state dir: %w", err)
	}
	return nil
}

// removeOlder deletes the files of the generations before gen (the newest checkpoint), and
// stray temporaries; it runs when no checkpoint is being written.
func (st *store) removeOlder(gen int) {
	entries, err := os.ReadDir(st.dir)
	if err != nil {
		return
	}
	var old []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			old = append(old, name)
			continue
		}
		if m := stateFileName.FindStringSubmatch(name); m != nil {
			if n, _ := strconv.Atoi(m[2]); n < gen {
				old = append(old, name)
			}
		}
	}
	sort.Strings(old)
	for _, name := range old {
		_ = os.Remove(filepath.Join(st.dir, name))
	}
}

// close waits for the checkpoint writer, then writes what is queued and closes the log. The
// server's lock must not be held: the writer takes it between chunks. The store must no longer
// be reachable by calls (no new checkpoint starts).
func (st *store) close() error {
	if st.ckptDone != nil {
		<-st.ckptDone
	}
	st.wmu.Lock()
	defer st.wmu.Unlock()
	if st.log == nil {
		return nil
	}
	err := errors.Join(st.writePending(), st.log.Sync(), st.log.Close())
	st.log = nil
	return err
}
