package cloudsim

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEpochIsSecondsWithMilliseconds: a time is written as JSON 1.1 does (seconds since the
// epoch with three decimals, 0 for the zero time), the same whether the epoch is a field, a
// pointer field (nil omitted) or inside a list.
func TestEpochIsSecondsWithMilliseconds(t *testing.T) {
	at := time.Date(2026, 12, 4, 19, 30, 1, 234_567_891, time.UTC)
	type doc struct {
		At   epoch   `json:"At"`
		Ptr  *epoch  `json:"Ptr,omitempty"`
		None *epoch  `json:"None,omitempty"`
		List []epoch `json:"List"`
	}
	out, err := json.Marshal(doc{At: epochOf(at), Ptr: epochPtr(at), None: epochPtr(time.Time{}), List: []epoch{epochOf(time.Time{}), epochOf(time.Unix(0, 1e6))}})
	require.NoError(t, err)
	want := strconv.FormatInt(at.Unix(), 10) + ".234"
	require.JSONEq(t, `{"At":`+want+`,"Ptr":`+want+`,"List":[0,0.001]}`, string(out))
	require.Equal(t, `{"At":`+want+`,"Ptr":`+want+`,"List":[0,0.001]}`, string(out))
}
