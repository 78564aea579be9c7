package events

import eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

// RunInstanceIDs returns the instances in scope of a run: those of its location groups when it
// has groups, else its flat instance list (events published before runs had groups).
func RunInstanceIDs(rs *eventsv1.RunStarted) []string {
	if len(rs.GetGroups()) == 0 {
		return rs.GetInstanceIds()
	}
	var ids []string
	for _, g := range rs.GetGroups() {
		ids = append(ids, g.GetInstanceIds()...)
	}
	return ids
}
