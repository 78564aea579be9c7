package domain

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// An assessment (a scan of every in-scope instance of a tenant) is planned where its order
// (scan.ordered) stands in the stream, then released per wave under the wave's max
// concurrency: a chunk (one ScanRequested, one SSM command) is released only while the
// instances of the wave's released chunks still without an outcome (scan.completed or
// scan.failed), plus the chunk's, stay within the limit. Chunks release in a fixed order (the
// order's stream sequence, then the chunk number), so replicas that release from the same
// read model release the same chunks with the same event ids.

// MaxScanChunk is the most instances one ScanRequested names (one SSM command).
const MaxScanChunk = 50

// DefaultScanConcurrencyPercent is the max concurrency of a wave whose rollout policy (and the
// tenant's default policy) sets none: the scheduler's built-in 10%.
const DefaultScanConcurrencyPercent = 10

// ScanConcurrency resolves a wave's max concurrency for a scan of n of its instances: a count,
// or a percentage of n rounded up (nil: the built-in 10%); at least 1 and at most n.
func ScanConcurrency(a *typesv1.Amount, n int) int {
	limit := (DefaultScanConcurrencyPercent*n + 99) / 100
	switch v := a.GetValue().(type) {
	case *typesv1.Amount_Count:
		limit = int(v.Count)
	case *typesv1.Amount_Percent:
		limit = (int(v.Percent)*n + 99) / 100
	}
	return max(1, min(limit, n))
}

// ScanChunk is one chunk of a planned scan: the instances of one wave, location, OS family and
// baseline that one ScanRequested names.
type ScanChunk struct {
	ScanID string `json:"s"`
	// N numbers the scan's chunks from 1; Order is the stream sequence of the scan's order.
	N     int    `json:"n"`
	Order uint64 `json:"o"`
	Wave  int32  `json:"w"`
	// Limit is the wave's max concurrency for this scan, in instances.
	Limit       int       `json:"l"`
	Account     string    `json:"ac"`
	Region      string    `json:"rg"`
	OSFamily    string    `json:"f"`
	BaselineID  string    `json:"b"`
	PatchIDs    []string  `json:"p,omitempty"`
	InstanceIDs []string  `json:"i"`
	RequestedBy string    `json:"by,omitempty"`
	RequestedAt time.Time `json:"at"`
}

// Ref is the chunk's place in its wave's release order; refs sort in that order.
func (c ScanChunk) Ref() string {
	return fmt.Sprintf("%020d/%06d/%s", c.Order, c.N, c.ScanID)
}

// ParseScanRef returns the scan id and chunk number of a Ref.
func ParseScanRef(ref string) (scanID string, n int, err error) {
	parts := strings.SplitN(ref, "/", 3)
	if len(parts) != 3 {
		return "", 0, fmt.Errorf("scan chunk ref %q: want <order>/<n>/<scan>", ref)
	}
	n, err = strconv.Atoi(parts[1])
	if err != nil {
		return "", 0, fmt.Errorf("scan chunk ref %q: %w", ref, err)
	}
	return parts[2], n, nil
}

// ScanInFlight names one instance's scan in its wave's in-flight set.
func ScanInFlight(scanID, instanceID string) string { return scanID + "/" + instanceID }

// ScanPlan is what an ordered scan was planned into.
type ScanPlan struct {
	ScanID string `json:"s"`
	// Instances to scan, in Chunks; Unlocated instances could not be (no run named their
	// account and region, or no baseline applies).
	Instances int `json:"i"`
	Chunks    int `json:"c"`
	Unlocated int `json:"u"`
	// InRun counts the instances left out because their job in a run still in progress has
	// not ended: that job's outcome assesses them.
	InRun int `json:"r,omitempty"`
	// Waves lists each wave's max concurrency for the scan.
	Waves map[int32]int `json:"w,omitempty"`
}

// JobUnderway says whether a job in state s has not ended yet: the instance is being
// snapshotted, patched or restored (or waits its turn), so a scan of it now would read a
// machine in the middle of a change.
func JobUnderway(s typesv1.JobState) bool {
	switch s {
	case typesv1.JobState_JOB_STATE_PENDING, typesv1.JobState_JOB_STATE_SNAPSHOTTING,
		typesv1.JobState_JOB_STATE_INSTALLING, typesv1.JobState_JOB_STATE_RESTORING:
		return true
	}
	return false
}
