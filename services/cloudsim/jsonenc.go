package cloudsim

import (
	"unicode/utf8"
)

// The SSM answers that carry a page of 50 items (ListCommandInvocations,
// DescribeInstanceInformation, DescribeInstancePatchStates) are written by hand: through
// encoding/json's reflection they were a third of those calls' CPU. The output is byte for
// byte what encoding/json writes for the same structs (TestHandWrittenJSONEqualsEncodingJSON),
// HTML characters escaped as json.Marshal does. They use the state log's object writer (jw,
// recenc.go), with the epoch members below.

// jsonAppender is an answer that writes its own JSON.
type jsonAppender interface{ appendJSON(b []byte) []byte }

// number writes an epoch (a json.Number); encoding/json writes an empty one as 0.
func (w *jw) number(k string, v epoch) {
	w.key(k)
	if v == "" {
		w.b = append(w.b, '0')
		return
	}
	w.b = append(w.b, v...)
}

func (w *jw) numberOmit(k string, v *epoch) {
	if v != nil {
		w.number(k, *v)
	}
}

// appendJSONList appends a JSON array of items; a nil slice is null, as encoding/json writes it.
func appendJSONList[T any](b []byte, items []T, each func(b []byte, x *T) []byte) []byte {
	if items == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = each(b, &items[i])
	}
	return append(b, ']')
}

// appendJSONStringHTML appends s as json.Marshal does (the SSM answers and the state log use it): quotes, backslashes and control
// characters escaped (\b \f \n \r \t by name), <, > and & as \u003c, \u003e and \u0026, U+2028
// and U+2029 escaped, and each byte of invalid UTF-8 as \ufffd. Runs that need nothing are
// copied whole.
func appendJSONStringHTML(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	run := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonHTMLPlain[c] {
				i++
				continue
			}
			b = append(b, s[run:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			run = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[run:i]...)
			b = append(b, `\ufffd`...)
			i += size
			run = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[run:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			run = i
			continue
		}
		i += size
	}
	b = append(b, s[run:]...)
	return append(b, '"')
}

// jsonHTMLPlain tells, for each ASCII byte, whether json.Marshal writes it as it is.
var jsonHTMLPlain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

func (p *ssmPlugin) appendJSON(b []byte) []byte {
	o := obj(b)
	o.str("Name", p.Name)
	o.str("Status", p.Status)
	o.str("StatusDetails", p.StatusDetails)
	o.int("ResponseCode", p.ResponseCode)
	o.numberOmit("ResponseStartDateTime", p.ResponseStartDateTime)
	o.numberOmit("ResponseFinishDateTime", p.ResponseFinishDateTime)
	o.str("Output", p.Output)
	o.str("StandardOutputUrl", p.StandardOutputURL)
	o.str("StandardErrorUrl", p.StandardErrorURL)
	o.str("OutputS3Region", p.OutputS3Region)
	o.str("OutputS3BucketName", p.OutputS3BucketName)
	o.str("OutputS3KeyPrefix", p.OutputS3KeyPrefix)
	return o.end()
}

func (v *ssmInvocation) appendJSON(b []byte) []byte {
	o := obj(b)
	o.str("CommandId", v.CommandID)
	o.str("InstanceId", v.InstanceID)
	o.str("InstanceName", v.InstanceName)
	o.str("Comment", v.Comment)
	o.str("DocumentName", v.DocumentName)
	o.str("DocumentVersion", v.DocumentVersion)
	o.numberOmit("RequestedDateTime", v.RequestedDateTime)
	o.str("Status", v.Status)
	o.str("StatusDetails", v.StatusDetails)
	o.str("TraceOutput", v.TraceOutput)
	o.str("StandardOutputUrl", v.StandardOutputURL)
	o.str("StandardErrorUrl", v.StandardErrorURL)
	o.key("CommandPlugins")
	o.b = appendJSONList(o.b, v.CommandPlugins, func(b []byte, p *ssmPlugin) []byte { return p.appendJSON(b) })
	o.str("ServiceRole", v.ServiceRole)
	return o.end()
}

func (x *ssmInstanceInfo) appendJSON(b []byte) []byte {
	o := obj(b)
	o.str("InstanceId", x.InstanceID)
	o.str("PingStatus", x.PingStatus)
	o.numberOmit("LastPingDateTime", x.LastPingDateTime)
	o.str("AgentVersion", x.AgentVersion)
	o.bool("IsLatestVersion", x.IsLatestVersion)
	o.str("PlatformType", x.PlatformType)
	o.str("PlatformName", x.PlatformName)
	o.str("PlatformVersion", x.PlatformVersion)
	o.str("ResourceType", x.ResourceType)
	o.str("IPAddress", x.IPAddress)
	o.str("ComputerName", x.ComputerName)
	o.str("SourceId", x.SourceID)
	o.str("SourceType", x.SourceType)
	return o.end()
}

func (s *ssmPatchState) appendJSON(b []byte) []byte {
	o := obj(b)
	o.str("InstanceId", s.InstanceID)
	o.str("PatchGroup", s.PatchGroup)
	o.str("BaselineId", s.BaselineID)
	o.strOmit("SnapshotId", s.SnapshotID)
	o.strOmit("InstallOverrideList", s.InstallOverrideList)
	o.int("InstalledCount", s.InstalledCount)
	o.int("InstalledOtherCount", s.InstalledOtherCount)
	o.int("InstalledPendingRebootCount", s.InstalledPendingRebootCount)
	o.int("InstalledRejectedCount", s.InstalledRejectedCount)
	o.int("MissingCount", s.MissingCount)
	o.int("FailedCount", s.FailedCount)
	o.int("UnreportedNotApplicableCount", s.UnreportedNotApplicable)
	o.int("NotApplicableCount", s.NotApplicableCount)
	o.int("AvailableSecurityUpdateCount", s.AvailableSecurityUpdate)
	o.number("OperationStartTime", s.OperationStartTime)
	o.number("OperationEndTime", s.OperationEndTime)
	o.str("Operation", s.Operation)
	o.str("RebootOption", s.RebootOption)
	o.int("CriticalNonCompliantCount", s.CriticalNonCompliantCount)
	o.int("SecurityNonCompliantCount", s.SecurityNonCompliantCount)
	o.int("OtherNonCompliantCount", s.OtherNonCompliantCount)
	return o.end()
}

// ssmInvocationsPage is ListCommandInvocations' answer.
type ssmInvocationsPage struct {
	CommandInvocations []ssmInvocation `json:"CommandInvocations"`
	NextToken          string          `json:"NextToken,omitempty"`
}

func (p *ssmInvocationsPage) appendJSON(b []byte) []byte {
	return appendJSONPage(b, "CommandInvocations", p.CommandInvocations, (*ssmInvocation).appendJSON, p.NextToken)
}

// appendJSONPage appends an SSM page: its list under key, then NextToken unless it is empty.
func appendJSONPage[T any](b []byte, key string, items []T, each func(x *T, b []byte) []byte, next string) []byte {
	o := obj(b)
	o.key(key)
	o.b = appendJSONList(o.b, items, func(b []byte, x *T) []byte { return each(x, b) })
	o.strOmit("NextToken", next)
	return o.end()
}

// ssmInstanceInfoPage is DescribeInstanceInformation's answer.
type ssmInstanceInfoPage struct {
	InstanceInformationList []ssmInstanceInfo `json:"InstanceInformationList"`
	NextToken               string            `json:"NextToken,omitempty"`
}

func (p *ssmInstanceInfoPage) appendJSON(b []byte) []byte {
	return appendJSONPage(b, "InstanceInformationList", p.InstanceInformationList, (*ssmInstanceInfo).appendJSON, p.NextToken)
}

// ssmPatchStatesPage is DescribeInstancePatchStates' answer.
type ssmPatchStatesPage struct {
	InstancePatchStates []ssmPatchState `json:"InstancePatchStates"`
	NextToken           string          `json:"NextToken,omitempty"`
}

func (p *ssmPatchStatesPage) appendJSON(b []byte) []byte {
	return appendJSONPage(b, "InstancePatchStates", p.InstancePatchStates, (*ssmPatchState).appendJSON, p.NextToken)
}
