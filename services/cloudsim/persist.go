package cloudsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// store keeps the world in a state directory: checkpoint-<gen>.jsonl holds every entity as of
// the start of generation gen, and log-<gen>.jsonl every change since, one JSON line per changed
// entity (the entity's whole new value, or a deletion). Loading reads the newest complete
// checkpoint and replays its log; a torn last line (a crash mid-write) is ignored. When a log
// has CheckpointEvery records, the next generation's checkpoint is written (to a temporary file,
// synced, then renamed), a fresh log is started, and the older generation is removed. A call
// costs one appended line per entity it changed; only compaction writes everything.
//
// A call encodes its records under the server's exclusive lock (the entities cannot change while
// they are encoded, and the records queue in the order of the changes) and writes them after
// releasing it (write): whichever call writes first takes every record queued so far, so calls
// that changed the world at once share one write, and no call holds the world's lock across a
// system call. A call returns only when its records were written.
type store struct {
	dir     string
	every   int
	gen     int
	records int
	// scratch is encode's buffer, kept between calls (encode runs under the server's lock).
	scratch bytes.Buffer

	qmu     sync.Mutex // guards pending and queued; taken under the server's lock or by a writer
	pending []byte     // records encoded and not yet written, in the order of the changes
	queued  uint64     // bytes ever queued

	wmu     sync.Mutex // held while writing the log or replacing it
	log     *os.File
	written uint64 // bytes ever written: the records up to there reached the OS
	spare   []byte // the buffer of the last write, reused as the next pending
}

// record is one line of a checkpoint or log.
type record struct {
	Kind    string          `json:"k"`
	ID      string          `json:"id"`
	Value   json.RawMessage `json:"v,omitempty"`
	Deleted bool            `json:"d,omitempty"`
}

var checkpointName = regexp.MustCompile(`^checkpoint-([0-9]{8})\.jsonl$`)

func openStore(dir string, every int, w *world) (*store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cloudsim state dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cloudsim state dir: %w", err)
	}
	st := &store{dir: dir, every: every}
	for _, e := range entries {
		if m := checkpointName.FindStringSubmatch(e.Name()); m != nil {
			if n, _ := strconv.Atoi(m[1]); n > st.gen {
				st.gen = n
			}
		}
	}
	if st.gen > 0 {
		if _, _, err := st.replay(st.path("checkpoint"), w, false); err != nil {
			return nil, err
		}
		n, valid, err := st.replay(st.path("log"), w, true)
		if err != nil {
			return nil, err
		}
		st.records = n
		// Drop a torn last line so that the next append starts on a line of its own.
		if fi, err := os.Stat(st.path("log")); err == nil && fi.Size() > valid {
			if err := os.Truncate(st.path("log"), valid); err != nil {
				return nil, fmt.Errorf("cloudsim state log: %w", err)
			}
		}
	} else {
		st.gen = 1
		// An empty checkpoint marks generation 1 as started.
		if err := writeFileSync(st.path("checkpoint"), nil); err != nil {
			return nil, err
		}
	}
	st.removeOlder()
	f, err := os.OpenFile(st.path("log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cloudsim state log: %w", err)
	}
	st.log = f
	return st, nil
}

func (st *store) path(kind string) string {
	return filepath.Join(st.dir, fmt.Sprintf("%s-%08d.jsonl", kind, st.gen))
}

// replay applies the records of one file and returns how many there were and the length of
// the complete lines; a log may end in a torn line.
func (st *store) replay(path string, w *world, isLog bool) (n int, valid int64, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && isLog {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("cloudsim state: %w", err)
	}
	for len(data) > 0 {
		var line []byte
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if isLog {
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
	line = appendJSONString(line, k.Kind)
	line = append(line, `,"id":`...)
	line = appendJSONString(line, k.ID)
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
// lock) and compacts when the log is long enough; end is the position write must reach for
// these records to be in the log.
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
	if st.records >= st.every {
		return end, st.checkpoint(w)
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

// checkpoint writes the next generation's checkpoint of the whole world and starts its log.
func (st *store) checkpoint(w *world) error {
	next := &store{dir: st.dir, every: st.every, gen: st.gen + 1}
	var b bytes.Buffer
	write := func(kind, id string, v any) error { return encodeRecord(&b, entityKey{kind, id}, v) }
	errs := []error{write("meta", "", &w.meta)}
	for _, id := range sortedKeys(w.accounts) {
		errs = append(errs, write("account", id, w.accounts[id]))
	}
	for id, v := range w.sessions {
		errs = append(errs, write("session", id, v))
	}
	for id, v := range w.instances {
		errs = append(errs, write("instance", id, v))
	}
	for id, v := range w.snapshots {
		errs = append(errs, write("snapshot", id, v))
	}
	for id, v := range w.commands {
		errs = append(errs, write("command", id, v))
	}
	for k, v := range w.invs {
		errs = append(errs, write("invocation", k.CommandID+"/"+k.InstanceID, v))
	}
	for id, v := range w.tasks {
		errs = append(errs, write("task", id, v))
	}
	for id, v := range w.buckets {
		errs = append(errs, write("bucket", id, v))
	}
	for bname, objs := range w.objects {
		for key, o := range objs {
			errs = append(errs, write("object", bname+"/"+key, o))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := writeFileSync(next.path("checkpoint"), b.Bytes()); err != nil {
		return err
	}
	f, err := os.OpenFile(next.path("log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("cloudsim state log: %w", err)
	}
	// The records queued before the checkpoint belong to the old log (the checkpoint already
	// holds their changes): write them there before the new log starts.
	st.wmu.Lock()
	_ = st.writePending()
	_ = st.log.Close()
	st.gen, st.log, st.records = next.gen, f, 0
	st.wmu.Unlock()
	st.removeOlder()
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
	return nil
}

// removeOlder deletes the files of generations before the current one, and stray temporaries.
func (st *store) removeOlder() {
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
		for _, kind := range []string{"checkpoint-", "log-"} {
			if rest, ok := strings.CutPrefix(name, kind); ok {
				if n, err := strconv.Atoi(strings.TrimSuffix(rest, ".jsonl")); err == nil && n < st.gen {
					old = append(old, name)
				}
			}
		}
	}
	sort.Strings(old)
	for _, name := range old {
		_ = os.Remove(filepath.Join(st.dir, name))
	}
}

func (st *store) close() error {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	if st.log == nil {
		return nil
	}
	err := errors.Join(st.writePending(), st.log.Sync(), st.log.Close())
	st.log = nil
	return err
}
