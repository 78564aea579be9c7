package cloudsim

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"
)

// InstanceInfo is the admin view of one instance, with its states as of now.
type InstanceInfo struct {
	ID            string            `json:"id"`
	Account       string            `json:"account"`
	Region        string            `json:"region"`
	AZ            string            `json:"availability_zone"`
	State         string            `json:"state"`
	OSFamily      string            `json:"os_family"`
	Platform      string            `json:"platform"`
	Tags          map[string]string `json:"tags"`
	Volumes       []string          `json:"volumes"`
	Agent         bool              `json:"agent"`
	PingStatus    string            `json:"ping_status,omitempty"`
	SystemStatus  string            `json:"system_status"`
	InstanceCheck string            `json:"instance_status"`
	Rebooting     bool              `json:"rebooting"`
	Patches       map[string]string `json:"patches"` // patch id -> state
	FailNext      int               `json:"fail_next_installs,omitempty"`
}

// Instance describes an instance as of now (the admin API's GET /_cloudsim/instances/{id}).
func (s *Server) Instance(id string) (InstanceInfo, bool) {
	var out InstanceInfo
	found := false
	_ = s.view(func(w *world, now time.Time) error {
		in := w.instances[id]
		if in == nil {
			return nil
		}
		found = true
		w.settle(in, now)
		sys, inst := w.statusChecks(in, now)
		out = InstanceInfo{ID: in.ID, Account: in.Account, Region: in.Region, AZ: in.AZ, State: in.State, OSFamily: in.OS,
			Platform: osCatalog[in.OS].Platform, Tags: cloneTags(in.Tags), Agent: in.Agent, PingStatus: in.pingStatus(now),
			SystemStatus: sys, InstanceCheck: inst, Rebooting: in.rebooting(now), Patches: map[string]string{}, FailNext: in.FailNextInstalls}
		for _, v := range in.Volumes {
			out.Volumes = append(out.Volumes, v.ID)
		}
		for pid, p := range in.Patches {
			out.Patches[pid] = p.State
		}
		return nil
	}, nil)
	return out, found
}

// InstanceIDs lists an account's instance ids in a region, in creation order.
func (s *Server) InstanceIDs(account, region string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	set := s.w.instByRegion[regionKey{account, region}]
	if set == nil {
		return nil
	}
	out := make([]string, 0, len(set.items))
	for _, in := range set.items {
		out = append(out, in.ID)
	}
	return out
}

// admin serves /_cloudsim/...: JSON, no signature.
func (s *Server) admin(rw http.ResponseWriter, r *http.Request) {
	p := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/_cloudsim/"), "/")
	switch {
	case p == "stats" && r.Method == http.MethodGet:
		adminJSON(rw, http.StatusOK, s.Stats())
	case p == "stats/reset" && r.Method == http.MethodPost:
		s.ResetStats()
		adminJSON(rw, http.StatusOK, map[string]string{"status": "reset"})
	case strings.HasPrefix(p, "stats/instances/") && r.Method == http.MethodGet:
		adminJSON(rw, http.StatusOK, map[string]any{"instance_id": strings.TrimPrefix(p, "stats/instances/"),
			"operations": s.InstanceStats(strings.TrimPrefix(p, "stats/instances/"))})
	case p == "faults" && r.Method == http.MethodPost:
		var f Fault
		if err := decodeAdmin(r, &f); err != nil {
			adminError(rw, http.StatusBadRequest, err)
			return
		}
		if err := s.InjectFault(f); err != nil {
			adminError(rw, http.StatusBadRequest, err)
			return
		}
		adminJSON(rw, http.StatusOK, map[string]any{"status": "injected", "fault": f})
	case p == "faults" && r.Method == http.MethodGet:
		adminJSON(rw, http.StatusOK, map[string]any{"faults": s.Faults()})
	case p == "faults" && r.Method == http.MethodDelete:
		s.ClearFaults()
		adminJSON(rw, http.StatusOK, map[string]string{"status": "cleared"})
	case p == "accounts" && r.Method == http.MethodGet:
		key, secret := s.ProviderCredentials()
		adminJSON(rw, http.StatusOK, map[string]any{"provider": map[string]string{"account_id": s.cfg.ProviderAccountID,
			"access_key_id": key, "secret_access_key": secret}, "accounts": s.Accounts()})
	case p == "instances" && r.Method == http.MethodPost:
		var spec InstanceSpec
		if err := decodeAdmin(r, &spec); err != nil {
			adminError(rw, http.StatusBadRequest, err)
			return
		}
		ids, err := s.AddInstances(spec)
		if err != nil {
			adminError(rw, http.StatusBadRequest, err)
			return
		}
		adminJSON(rw, http.StatusCreated, map[string]any{"instance_ids": ids})
	case strings.HasPrefix(p, "instances/") && r.Method == http.MethodGet:
		info, ok := s.Instance(strings.TrimPrefix(p, "instances/"))
		if !ok {
			adminError(rw, http.StatusNotFound, errors.New("no such instance"))
			return
		}
		adminJSON(rw, http.StatusOK, info)
	default:
		adminError(rw, http.StatusNotFound, errors.New("unknown admin route "+r.Method+" /_cloudsim/"+p+
			" (routes: GET stats, POST stats/reset, GET stats/instances/{id}, GET|POST|DELETE faults, GET accounts, POST instances, GET instances/{id})"))
	}
}

func decodeAdmin(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("request body: " + err.Error())
	}
	return nil
}

func adminJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	enc := json.NewEncoder(rw)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func adminError(rw http.ResponseWriter, status int, err error) {
	msgs := strings.Split(err.Error(), "\n")
	sort.Strings(msgs)
	adminJSON(rw, status, map[string]any{"error": strings.Join(msgs, "; ")})
}
