package adapters

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/patchwave/patchwave/services/snapshotter/internal/domain"
)

// recordV1 starts a snapshot record in its binary form. A record is kept for every job of every
// run (100,000 of them after a wave of 100,000 instances), so it is written compactly:
// recordV1, then each string as a uvarint length and its bytes, then each time as a length and
// time.Time's binary form (which keeps the zero time and the offset, as JSON did). Records
// written before were JSON documents, which start with '{' and are still read.
const recordV1 = 0x01

// encodeSnapshot appends the binary record of s to b.
func encodeSnapshot(b []byte, s domain.Snapshot) ([]byte, error) {
	b = append(b, recordV1)
	for _, f := range [...]string{s.Tenant, s.RunID, s.InstanceID, s.SetID, s.Account, s.Region, string(s.State), string(s.Outcome), s.Error} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	for _, t := range [...]time.Time{s.StartedAt, s.DueAt} {
		at := len(b)
		b = append(b, 0) // the length, set below: time's binary form is 15 to 16 bytes
		var err error
		if b, err = t.AppendBinary(b); err != nil {
			return nil, err
		}
		b[at] = byte(len(b) - at - 1)
	}
	return b, nil
}

var errShortRecord = errors.New("snapshot record: truncated")

// decodeSnapshot reads a record written by encodeSnapshot, or a JSON record written before.
func decodeSnapshot(b []byte) (domain.Snapshot, error) {
	if len(b) > 0 && b[0] == '{' {
		return decodeSnapshotJSON(b)
	}
	var s domain.Snapshot
	if len(b) == 0 || b[0] != recordV1 {
		return s, fmt.Errorf("snapshot record: unknown form %q", b[:min(len(b), 1)])
	}
	b = b[1:]
	// The strings are cut from one copy of the record: one allocation instead of nine.
	str := string(b)
	var f [9]string
	for i := range f {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return s, errShortRecord
		}
		at := len(str) - len(b) + w
		f[i], b = str[at:at+int(n)], b[w+int(n):]
	}
	s.Tenant, s.RunID, s.InstanceID, s.SetID, s.Account, s.Region = f[0], f[1], f[2], f[3], f[4], f[5]
	s.State, s.Outcome, s.Error = domain.SnapshotState(f[6]), domain.JobOutcome(f[7]), f[8]
	var ts [2]time.Time
	for i := range ts {
		if len(b) == 0 || int(b[0]) > len(b)-1 {
			return s, errShortRecord
		}
		n := int(b[0])
		if err := ts[i].UnmarshalBinary(b[1 : 1+n]); err != nil {
			return s, fmt.Errorf("snapshot record: %w", err)
		}
		b = b[1+n:]
	}
	s.StartedAt, s.DueAt = ts[0], ts[1]
	if len(b) != 0 {
		return s, fmt.Errorf("snapshot record: %d bytes after the last field", len(b))
	}
	return s, nil
}

// decodeSnapshotJSON reads a record written as JSON, as records were before recordV1 (apart,
// so that decodeSnapshot's record stays on the stack).
func decodeSnapshotJSON(b []byte) (domain.Snapshot, error) {
	var s domain.Snapshot
	err := json.Unmarshal(b, &s)
	return s, err
}
