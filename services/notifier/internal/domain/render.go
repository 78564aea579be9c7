package domain

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"net/url"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

// Message is a notification rendered for one channel.
type Message struct {
	Subject string
	Text    string
	HTML    string
}

// View is what templates are given: the notification and its links. It holds no secret (no
// URL of a subscription, no key), so no template can print one.
type View struct {
	Notification
	// SeverityName is "info", "warning" or "critical".
	SeverityName string
	// Links to the API (empty when the notifier has no public URL configured).
	Links Links
}

// Links point at the API's resources a notification is about.
type Links struct {
	Run        string
	Deliveries string
	Restore    string
	Approvals  string
}

// NewView builds the template data; publicURL is the API's base URL, or "".
func NewView(n Notification, publicURL string) View {
	v := View{Notification: n, SeverityName: n.Severity.String()}
	if publicURL == "" {
		return v
	}
	base := strings.TrimRight(publicURL, "/") + "/v1/tenants/" + url.PathEscape(n.Tenant)
	if n.RunID != "" {
		v.Links.Run = base + "/runs/" + url.PathEscape(n.RunID)
	}
	if n.RestoreID != "" {
		v.Links.Restore = base + "/restores/" + url.PathEscape(n.RestoreID)
	}
	if n.Type == TypeBaselineWaiting {
		v.Links.Approvals = base + "/approvals"
	}
	v.Links.Deliveries = base + "/deliveries"
	return v
}

// Default templates. Subject lines stay short; bodies list a digest's counts and failures.
const (
	DefaultSubject = `[Patchwave] {{.Summary}}`
	DefaultText    = `{{.Summary}}
{{- with .Digest}}

Instances: {{.Total}} in scope, {{.Succeeded}} succeeded, {{.Failed}} failed{{if .TimedOut}} ({{.TimedOut}} timed out){{end}}{{if .NotDone}}, {{.NotDone}} not done{{end}}
{{- if or .FailedInstall .FailedSnapshot}}
Failed at: install {{.FailedInstall}}, snapshot {{.FailedSnapshot}}
{{- end}}
{{- if .Failures}}

Failed instances:
{{- range .Failures}}
- {{.InstanceID}} ({{.Stage}}): {{.Reason}}
{{- end}}
{{- if .MoreFailures}}
... and {{.MoreFailures}} more
{{- end}}
{{- end}}
{{- end}}
{{- with .Links.Run}}

Run: {{.}}
{{- end}}
{{- with .Links.Restore}}

Restore: {{.}}
{{- end}}
{{- with .Links.Approvals}}

Approvals: {{.}}
{{- end}}
`
	DefaultSlack = `*{{slack .Summary}}*
{{- with .Digest}}
:white_check_mark: {{.Succeeded}} succeeded   :x: {{.Failed}} failed{{if .TimedOut}} ({{.TimedOut}} timed out){{end}}{{if .NotDone}}   :hourglass: {{.NotDone}} not done{{end}}   of {{.Total}}
{{- if or .FailedInstall .FailedSnapshot}}
install failed on {{.FailedInstall}}, snapshot failed on {{.FailedSnapshot}}
{{- end}}
{{- range .Failures}}
• ` + "`" + `{{slack .InstanceID}}` + "`" + ` ({{.Stage}}): {{slack .Reason}}
{{- end}}
{{- if .MoreFailures}}
… and {{.MoreFailures}} more
{{- end}}
{{- end}}
{{- with .Links.Run}}
<{{.}}|Open the run>
{{- end}}
{{- with .Links.Restore}}
<{{.}}|Open the restore>
{{- end}}
{{- with .Links.Approvals}}
<{{.}}|Open the approvals>
{{- end}}`
	DefaultHTML = `<!doctype html>
<html><body>
<p><strong>{{.Summary}}</strong></p>
{{- with .Digest}}
<p>Instances: {{.Total}} in scope, {{.Succeeded}} succeeded, {{.Failed}} failed{{if .TimedOut}} ({{.TimedOut}} timed out){{end}}{{if .NotDone}}, {{.NotDone}} not done{{end}}</p>
{{- if or .FailedInstall .FailedSnapshot}}
<p>Failed at: install {{.FailedInstall}}, snapshot {{.FailedSnapshot}}</p>
{{- end}}
{{- if .Failures}}
<table border="1" cellpadding="4"><tr><th>Instance</th><th>Stage</th><th>Error</th></tr>
{{- range .Failures}}
<tr><td>{{.InstanceID}}</td><td>{{.Stage}}</td><td>{{.Reason}}</td></tr>
{{- end}}
</table>
{{- if .MoreFailures}}<p>... and {{.MoreFailures}} more</p>{{end}}
{{- end}}
{{- end}}
{{- with .Links.Run}}<p><a href="{{.}}">Open the run</a></p>{{end}}
{{- with .Links.Restore}}<p><a href="{{.}}">Open the restore</a></p>{{end}}
{{- with .Links.Approvals}}<p><a href="{{.}}">Open the approvals</a></p>{{end}}
</body></html>
`
)

// MaxRendered bounds a rendered part.
const MaxRendered = 128 << 10

var funcs = map[string]any{
	// slack escapes the three characters Slack's mrkdwn gives a meaning to.
	"slack": func(s string) string {
		return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
	},
	"upper": strings.ToUpper,
	"time":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}

// Render renders a message with the given templates (empty ones take the defaults; Slack's
// text default is DefaultSlack).
func Render(v View, slack bool, subject, text, html string) (Message, error) {
	if subject == "" {
		subject = DefaultSubject
	}
	if text == "" {
		text = DefaultText
		if slack {
			text = DefaultSlack
		}
	}
	if html == "" {
		html = DefaultHTML
	}
	var m Message
	var err error
	if m.Subject, err = execText("subject", subject, v); err != nil {
		return Message{}, err
	}
	m.Subject = strings.Join(strings.Fields(m.Subject), " ")
	if r := []rune(m.Subject); len(r) > 100 {
		m.Subject = string(r[:97]) + "..."
	}
	if m.Text, err = execText("text", text, v); err != nil {
		return Message{}, err
	}
	if m.HTML, err = execHTML(html, v); err != nil {
		return Message{}, err
	}
	return m, nil
}

func execText(name, src string, v View) (string, error) {
	t, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(src)
	if err != nil {
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	if err := bounded(t.Tree, len(t.Templates())); err != nil {
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	return execute(name, func(b *bytes.Buffer) error { return t.Execute(b, v) })
}

func execHTML(src string, v View) (string, error) {
	t, err := htmltemplate.New("html").Funcs(funcs).Option("missingkey=error").Parse(src)
	if err != nil {
		return "", fmt.Errorf("template html: %w", err)
	}
	if err := bounded(t.Tree, len(t.Templates())); err != nil {
		return "", fmt.Errorf("template html: %w", err)
	}
	return execute("html", func(b *bytes.Buffer) error { return t.Execute(b, v) })
}

// bounded refuses what would let a tenant's template run for long: defining or calling
// templates (recursion) and ranging over a number ({{range 1000000000}}). Ranging over the
// notification's lists is bounded by the data (a digest lists at most MaxDigestFailures).
func bounded(tree *parse.Tree, templates int) error {
	if templates > 1 {
		return errors.New("define and block are not allowed")
	}
	if tree == nil || tree.Root == nil {
		return nil
	}
	var walk func(n parse.Node) error
	walk = func(n parse.Node) error {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return nil
			}
			for _, c := range n.Nodes {
				if err := walk(c); err != nil {
					return err
				}
			}
		case *parse.TemplateNode:
			return errors.New("template calls are not allowed")
		case *parse.RangeNode:
			for _, cmd := range n.Pipe.Cmds {
				for _, arg := range cmd.Args {
					if _, ok := arg.(*parse.NumberNode); ok {
						return errors.New("range over a number is not allowed")
					}
				}
			}
			return errors.Join(walk(n.List), walk(n.ElseList))
		case *parse.IfNode:
			return errors.Join(walk(n.List), walk(n.ElseList))
		case *parse.WithNode:
			return errors.Join(walk(n.List), walk(n.ElseList))
		}
		return nil
	}
	return walk(tree.Root)
}

func execute(name string, run func(*bytes.Buffer) error) (string, error) {
	var b bytes.Buffer
	if err := run(&b); err != nil {
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	if b.Len() > MaxRendered {
		return "", fmt.Errorf("template %s: renders %d bytes, more than %d", name, b.Len(), MaxRendered)
	}
	return b.String(), nil
}

// sample is what a template is tried on when it is stored.
var sample = NewView(Notification{
	ID: "n-0000000000000000", Type: TypeRunDigest, Severity: SeverityWarning, Failure: true, Tenant: "acme", Wave: 1,
	RunID: "run-1", AboutEventID: "patch.acme.run.completed/run-1", Summary: "acme wave 1 run run-1 completed with errors",
	Time:   time.Unix(0, 0).UTC(),
	Digest: &Digest{State: "completed with errors", Total: 3, Succeeded: 2, Failed: 1, Failures: []Failure{{InstanceID: "i-1", Stage: "install", Reason: "exit 1"}}},
}, "https://patchwave.example")

// CheckTemplate parses a template (name "subject", "text" or "html") and runs it on a sample
// notification; empty is the default and fine.
func CheckTemplate(name, src string) error {
	if src == "" {
		return nil
	}
	var err error
	if name == "html" {
		_, err = execHTML(src, sample)
	} else {
		_, err = execText(name, src, sample)
	}
	if err != nil {
		return errors.New("must be a valid Go template over the notification (" + err.Error() + ")")
	}
	return nil
}
