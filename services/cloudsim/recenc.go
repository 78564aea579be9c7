package cloudsim

import (
	"strconv"
	"time"
)

// The entities a wave changes on nearly every call (instances, snapshots, commands and
// invocations) are written to the state log by the appenders below rather than by
// encoding/json's reflection: the same JSON fields (what json.Unmarshal reads back at load),
// appended to the log buffer without allocating. Maps are written in their iteration order
// (decoding does not care); omitempty and omitzero fields are left out as encoding/json leaves
// them out. TestRecordEncodingMatchesJSON checks that every field decodes to what encoding/json
// would have written.

// appendValue appends the JSON of v and reports whether it knows v's type.
func appendValue(b []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case *instance:
		return appendInstance(b, x), true
	case *snapshot:
		return appendSnapshot(b, x), true
	case *invocation:
		return appendInvocation(b, x), true
	case *command:
		return appendCommand(b, x), true
	}
	return b, false
}

// jw appends the fields of one JSON object.
type jw struct {
	b     []byte
	first bool
}

func obj(b []byte) jw { return jw{b: append(b, '{'), first: true} }

func (w *jw) end() []byte { return append(w.b, '}') }

func (w *jw) key(k string) {
	if !w.first {
		w.b = append(w.b, ',')
	}
	w.first = false
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

// mapKey starts a member whose name is a map's key.
func (w *jw) mapKey(k string) {
	if !w.first {
		w.b = append(w.b, ',')
	}
	w.first = false
	w.b = appendJSONStringHTML(w.b, k)
	w.b = append(w.b, ':')
}

func (w *jw) str(k, v string) { w.key(k); w.b = appendJSONStringHTML(w.b, v) }

func (w *jw) strOmit(k, v string) {
	if v != "" {
		w.str(k, v)
	}
}

func (w *jw) uint(k string, v uint64) { w.key(k); w.b = strconv.AppendUint(w.b, v, 10) }

func (w *jw) int(k string, v int) { w.key(k); w.b = strconv.AppendInt(w.b, int64(v), 10) }

func (w *jw) intOmit(k string, v int) {
	if v != 0 {
		w.int(k, v)
	}
}

func (w *jw) bool(k string, v bool) { w.key(k); w.b = strconv.AppendBool(w.b, v) }

func (w *jw) boolOmit(k string, v bool) {
	if v {
		w.bool(k, v)
	}
}

func (w *jw) time(k string, t time.Time) { w.key(k); w.b = appendJSONTime(w.b, t) }

func (w *jw) timeOmit(k string, t time.Time) {
	if !t.IsZero() {
		w.time(k, t)
	}
}

func (w *jw) tags(k string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	w.key(k)
	w.b = appendStringMap(w.b, m)
}

func appendStringMap(b []byte, m map[string]string) []byte {
	o := obj(b)
	for k, v := range m {
		o.mapKey(k)
		o.b = appendJSONStringHTML(o.b, v)
	}
	return o.end()
}

func (w *jw) patches(k string, m map[string]*patchRecord) {
	if len(m) == 0 {
		return
	}
	w.key(k)
	o := obj(w.b)
	for id, p := range m {
		o.mapKey(id)
		if p == nil {
			o.b = append(o.b, "null"...)
		} else {
			o.b = appendPatch(o.b, p)
		}
	}
	w.b = o.end()
}

func appendPatch(b []byte, p *patchRecord) []byte {
	o := obj(b)
	o.str("id", p.ID)
	o.str("title", p.Title)
	o.strOmit("kb_id", p.KBID)
	o.str("classification", p.Classification)
	o.str("severity", p.Severity)
	o.str("state", p.State)
	o.timeOmit("installed_time", p.InstalledTime)
	return o.end()
}

func appendInstance(b []byte, in *instance) []byte {
	o := obj(b)
	o.str("id", in.ID)
	o.str("account", in.Account)
	o.str("region", in.Region)
	o.str("az", in.AZ)
	o.uint("ord", in.Ord)
	o.str("state", in.State)
	o.time("state_since", in.StateSince)
	o.time("launch_time", in.LaunchTime)
	o.tags("tags", in.Tags)
	o.str("os", in.OS)
	o.str("instance_type", in.InstanceType)
	o.str("image_id", in.ImageID)
	o.str("private_ip", in.PrivateIP)
	o.key("volumes")
	if in.Volumes == nil {
		o.b = append(o.b, "null"...)
	} else {
		o.b = append(o.b, '[')
		for i, v := range in.Volumes {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			if v == nil {
				o.b = append(o.b, "null"...)
				continue
			}
			vo := obj(o.b)
			vo.str("id", v.ID)
			vo.str("device", v.Device)
			vo.int("size_gib", v.SizeGiB)
			vo.tags("tags", v.Tags)
			vo.time("attach_time", v.AttachTime)
			o.b = vo.end()
		}
		o.b = append(o.b, ']')
	}
	o.bool("agent", in.Agent)
	o.boolOmit("agent_dropped", in.AgentDropped)
	o.boolOmit("impaired", in.Impaired)
	o.time("booted_at", in.BootedAt)
	o.timeOmit("reboot_until", in.RebootUntil)
	o.patches("patches", in.Patches)
	if op := in.LastOp; op != nil {
		o.key("last_op")
		po := obj(o.b)
		po.str("operation", op.Operation)
		po.str("reboot_option", op.RebootOption)
		po.strOmit("install_override_list", op.InstallOverrideList)
		po.strOmit("snapshot_id", op.SnapshotID)
		po.time("start", op.Start)
		po.time("end", op.End)
		o.b = po.end()
	}
	o.intOmit("fail_next_installs", in.FailNextInstalls)
	o.intOmit("fail_next_snapshots", in.FailNextSnaps)
	return o.end()
}

func appendSnapshot(b []byte, s *snapshot) []byte {
	o := obj(b)
	o.str("id", s.ID)
	o.str("account", s.Account)
	o.str("region", s.Region)
	o.uint("ord", s.Ord)
	o.str("volume_id", s.VolumeID)
	o.int("volume_size", s.VolumeSize)
	o.str("instance_id", s.InstanceID)
	o.boolOmit("root", s.Root)
	o.strOmit("description", s.Description)
	o.tags("tags", s.Tags)
	o.time("start", s.Start)
	o.time("end_at", s.EndAt)
	o.str("final", s.Final)
	o.patches("patches", s.Patches)
	return o.end()
}

func appendInvocation(b []byte, v *invocation) []byte {
	o := obj(b)
	o.str("command_id", v.CommandID)
	o.str("instance_id", v.InstanceID)
	o.str("account", v.Account)
	o.str("region", v.Region)
	o.uint("ord", v.Ord)
	o.time("requested", v.Requested)
	o.time("pending_until", v.PendingUntil)
	o.time("effect_at", v.EffectAt)
	o.time("end_at", v.EndAt)
	o.str("final", v.Final)
	o.str("final_details", v.FinalDetails)
	o.int("response_code", v.ResponseCode)
	o.strOmit("output", v.Output)
	o.boolOmit("rendered", v.Rendered)
	o.strOmit("os", v.OS)
	o.strOmit("stderr", v.Stderr)
	o.str("plugin", v.Plugin)
	o.str("operation", v.Operation)
	o.str("reboot_option", v.RebootOption)
	o.strOmit("override_list", v.OverrideList)
	o.strOmit("snapshot_id", v.SnapshotID)
	if len(v.Results) > 0 {
		o.key("results")
		o.b = append(o.b, '[')
		for i := range v.Results {
			if i > 0 {
				o.b = append(o.b, ',')
			}
			o.b = appendPatch(o.b, &v.Results[i])
		}
		o.b = append(o.b, ']')
	}
	o.boolOmit("reboot", v.Reboot)
	o.timeOmit("cancelled_at", v.CancelledAt)
	o.boolOmit("applied", v.Applied)
	return o.end()
}

func appendCommand(b []byte, c *command) []byte {
	o := obj(b)
	o.str("id", c.ID)
	o.str("account", c.Account)
	o.str("region", c.Region)
	o.uint("ord", c.Ord)
	o.str("document_name", c.DocumentName)
	o.strOmit("comment", c.Comment)
	if len(c.Parameters) > 0 {
		o.key("parameters")
		po := obj(o.b)
		for k, vs := range c.Parameters {
			po.mapKey(k)
			po.b = appendStrings(po.b, vs)
		}
		o.b = po.end()
	}
	o.key("instance_ids")
	o.b = appendStrings(o.b, c.InstanceIDs)
	o.time("requested", c.Requested)
	o.intOmit("timeout_seconds", c.TimeoutSeconds)
	o.strOmit("max_concurrency", c.MaxConcurrency)
	o.strOmit("max_errors", c.MaxErrors)
	return o.end()
}

func appendStrings(b []byte, vs []string) []byte {
	if vs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONStringHTML(b, v)
	}
	return append(b, ']')
}

// appendJSONTime appends t as encoding/json does (time.Time.MarshalJSON: RFC 3339 with
// nanoseconds, quoted).
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
