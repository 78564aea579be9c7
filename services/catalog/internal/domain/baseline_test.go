package domain_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
)

func valid() domain.Baseline {
	return domain.Baseline{
		ID: "al2023-2026.11", OSFamily: "amazon-linux-2023", Version: 1,
		Patches: []domain.Patch{{ID: "ALAS2023-2026-1001"}, {ID: "ALAS2023-2026-1002"}},
	}
}

func TestBaselineValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(b *domain.Baseline)
		want   []string
	}{
		{name: "a complete baseline is valid", change: func(*domain.Baseline) {}},
		{name: "an id with upper case is refused", change: func(b *domain.Baseline) { b.ID = "AL2023" }, want: []string{`ID "AL2023": must match`}},
		{name: "an id starting with a dot is refused", change: func(b *domain.Baseline) { b.ID = ".x" }, want: []string{`ID ".x"`}},
		{name: "an empty id is refused", change: func(b *domain.Baseline) { b.ID = "" }, want: []string{`ID "": must match`}},
		{name: "a missing OS family is refused", change: func(b *domain.Baseline) { b.OSFamily = " " }, want: []string{"OSFamily: required"}},
		{name: "version zero is refused", change: func(b *domain.Baseline) { b.Version = 0 }, want: []string{"Version 0: must be 1 or more"}},
		{name: "a baseline without patches is refused", change: func(b *domain.Baseline) { b.Patches = nil }, want: []string{"Patches: at least one patch"}},
		{
			name:   "a duplicate patch id names both indexes",
			change: func(b *domain.Baseline) { b.Patches[1].ID = b.Patches[0].ID },
			want:   []string{`Patches[1].ID "ALAS2023-2026-1001": duplicate of Patches[0]`},
		},
		{name: "an empty patch id is refused", change: func(b *domain.Baseline) { b.Patches[1].ID = "" }, want: []string{`Patches[1].ID "": required`}},
		{
			name: "unknown enum values are refused",
			change: func(b *domain.Baseline) {
				b.Patches[0].Severity = 99
				b.Patches[0].Classification = typesv1.Classification(42)
			},
			want: []string{"Patches[0].Severity 99: unknown severity", "Patches[0].Classification 42: unknown classification"},
		},
		{
			name:   "every problem is reported at once",
			change: func(b *domain.Baseline) { b.ID = "Bad"; b.Version = -1; b.Patches = nil },
			want:   []string{`ID "Bad"`, "Version -1", "Patches: at least one patch"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := valid()
			tt.change(&b)
			err := b.Validate()
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestValidateID(t *testing.T) {
	require.NoError(t, domain.ValidateID("al2023-2026.11"))
	err := domain.ValidateID("Nope/../x")
	require.ErrorIs(t, err, domain.ErrInvalid)
	require.ErrorContains(t, err, `baseline id "Nope/../x": must match`)
}

func TestInvalidKeepsTheMessageAndIsErrInvalid(t *testing.T) {
	err := domain.Invalid(errors.New("ID \"x\": must match"))
	require.ErrorIs(t, err, domain.ErrInvalid)
	require.EqualError(t, err, `ID "x": must match`)
	require.NoError(t, domain.Invalid(nil))
}
