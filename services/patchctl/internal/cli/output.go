package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	schedulerv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// jsonOutput prints every field, zero values included, as the API does.
var jsonOutput = protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}

// table is what a command prints in table mode: optional lines, then aligned rows.
type table struct {
	lines []string
	rows  [][]string
}

func (t *table) line(format string, a ...any) { t.lines = append(t.lines, fmt.Sprintf(format, a...)) }
func (t *table) row(cells ...string)          { t.rows = append(t.rows, cells) }

// print writes msg as JSON, or the table fill builds.
func (c *CLI) print(o options, msg proto.Message, fill func(*table)) error {
	if o.json || fill == nil {
		b, err := jsonOutput.Marshal(msg)
		if err != nil {
			return fmt.Errorf("encode output: %w", err)
		}
		_, err = fmt.Fprintf(c.Stdout, "%s\n", b)
		return err
	}
	var t table
	fill(&t)
	for _, l := range t.lines {
		if _, err := fmt.Fprintln(c.Stdout, l); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	for _, r := range t.rows {
		if _, err := fmt.Fprintln(tw, strings.Join(r, "\t")); err != nil {
			return err
		}
	}
	return tw.Flush()
}

func runRows(t *table, runs ...*schedulerv1.Run) {
	t.row("RUN", "WAVE", "BASELINE", "STATE", "TOTAL", "SNAPSHOTTED", "SUCCEEDED", "FAILED", "SNAPSHOT FAILED", "STARTED", "COMPLETED")
	for _, r := range runs {
		t.row(r.GetRunId(), itoa(r.GetWave()), orDash(r.GetBaselineId()), stateName(r.GetState()),
			itoa(r.GetTotal()), itoa(r.GetSnapshotted()), itoa(r.GetSucceeded()), itoa(r.GetFailed()),
			itoa(r.GetSnapshotFailed()), timeCell(r.GetStartedAt()), timeCell(r.GetCompletedAt()))
	}
}

func complianceRows(t *table, resp *reportingv1.GetComplianceResponse) {
	t.line("tenant %s, as of %s", resp.GetTenant(), timeCell(resp.GetAsOf()))
	t.row("WAVE", "IN SCOPE", "COMPLIANT", "NON-COMPLIANT", "UNKNOWN", "COVERAGE %")
	cov := func(wave string, c *reportingv1.Coverage) {
		t.row(wave, itoa(c.GetInScope()), itoa(c.GetCompliant()), itoa(c.GetNonCompliant()),
			itoa(c.GetUnknown()), strconv.FormatFloat(c.GetCoverage()*100, 'f', 1, 64))
	}
	for _, w := range resp.GetWaves() {
		cov(itoa(w.GetWave()), w.GetCoverage())
	}
	cov("total", resp.GetTotal())
}

func failedPatchRows(t *table, fps []*reportingv1.FailedPatch) {
	t.row("PATCH", "INSTANCE", "WAVE", "RUN", "ERROR")
	for _, f := range fps {
		t.row(f.GetPatchId(), f.GetInstanceId(), itoa(f.GetWave()), f.GetRunId(), orDash(oneLine(f.GetError())))
	}
}

func baselineRows(t *table, bs ...*catalogv1.Baseline) {
	t.row("BASELINE", "OS FAMILY", "VERSION", "PATCHES", "PUBLISHED")
	for _, b := range bs {
		t.row(b.GetBaselineId(), b.GetOsFamily(), itoa(b.GetVersion()), strconv.Itoa(len(b.GetPatches())), timeCell(b.GetPublishedAt()))
	}
}

func patchRows(t *table, b *catalogv1.Baseline) {
	t.line("baseline %s (%s, version %d), published %s", b.GetBaselineId(), b.GetOsFamily(), b.GetVersion(), timeCell(b.GetPublishedAt()))
	t.row("PATCH", "SEVERITY", "CLASSIFICATION", "REBOOT", "CVES", "TITLE")
	for _, p := range b.GetPatches() {
		reboot := "no"
		if p.GetRebootRequired() {
			reboot = "yes"
		}
		t.row(p.GetId(), enumName(p.GetSeverity().String(), "SEVERITY_"), enumName(p.GetClassification().String(), "CLASSIFICATION_"),
			reboot, orDash(strings.Join(p.GetCves(), ",")), orDash(p.GetTitle()))
	}
}

// stateName is the run state without its enum prefix: "COMPLETED_WITH_ERRORS".
func stateName(s typesv1.RunState) string { return enumName(s.String(), "RUN_STATE_") }

func enumName(s, prefix string) string { return strings.TrimPrefix(s, prefix) }

func itoa(n int32) string { return strconv.Itoa(int(n)) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func timeCell(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}
