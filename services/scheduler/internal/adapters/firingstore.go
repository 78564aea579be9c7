package adapters

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

// The firing's read models, under the same root (rebuilt from the stream like the others):
//
//	scheduler:approval:<tenant>:<baseline>   string "approved" or "rejected": the last decision
//	scheduler:firing:<tenant>:<run>          string, JSON domain.FiringView
//	scheduler:firings:<tenant>               set of the run ids with a firing view

// SetApproval records the tenant's last decision on a baseline.
func (s *Store) SetApproval(ctx context.Context, tenant, baselineID string, approved bool) error {
	v := "rejected"
	if approved {
		v = "approved"
	}
	if err := s.st.Set(ctx, root+"approval:"+tenant+":"+baselineID, []byte(v)); err != nil {
		return fmt.Errorf("record approval of %s by %s: %w", baselineID, tenant, err)
	}
	return nil
}

// Approved reports whether the tenant's last decision on a baseline is an approval.
func (s *Store) Approved(ctx context.Context, tenant, baselineID string) (bool, error) {
	v, found, err := s.st.Get(ctx, root+"approval:"+tenant+":"+baselineID)
	if err != nil {
		return false, fmt.Errorf("read approval of %s by %s: %w", baselineID, tenant, err)
	}
	return found && string(v) == "approved", nil
}

// PutFiring records a run's firing view.
func (s *Store) PutFiring(ctx context.Context, v domain.FiringView) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode firing of %s: %w", v.RunID, err)
	}
	if err := s.st.Set(ctx, root+"firing:"+v.Tenant+":"+v.RunID, data); err != nil {
		return fmt.Errorf("record firing of %s: %w", v.RunID, err)
	}
	if _, err := s.st.SAdd(ctx, root+"firings:"+v.Tenant, v.RunID); err != nil {
		return fmt.Errorf("index firing of %s: %w", v.RunID, err)
	}
	return nil
}

// Firing returns a run's firing view; false when it has none.
func (s *Store) Firing(ctx context.Context, tenant, runID string) (domain.FiringView, bool, error) {
	data, found, err := s.st.Get(ctx, root+"firing:"+tenant+":"+runID)
	if err != nil || !found {
		return domain.FiringView{}, false, err
	}
	var v domain.FiringView
	if err := json.Unmarshal(data, &v); err != nil {
		return domain.FiringView{}, false, fmt.Errorf("decode firing of %s: %w", runID, err)
	}
	return v, true, nil
}

// Firings returns a tenant's firing views.
func (s *Store) Firings(ctx context.Context, tenant string) ([]domain.FiringView, error) {
	ids, err := s.st.SMembers(ctx, root+"firings:"+tenant)
	if err != nil {
		return nil, fmt.Errorf("list firings of %s: %w", tenant, err)
	}
	out := make([]domain.FiringView, 0, len(ids))
	for _, id := range ids {
		v, ok, err := s.Firing(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, v)
		}
	}
	return out, nil
}
