package cloudsim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// overridePatch is one entry of an AWS-RunPatchBaseline InstallOverrideList.
type overridePatch struct {
	ID    string
	Title string
}

// parseOverrideList reads AWS's install override list: a YAML document with a top-level
// `patches` sequence of mappings with `id` (required) and `title`. Block style (items as "-"
// alone on a line or "- id: x") and a flow sequence (`patches: [{id: a, title: b}]`) are read;
// other keys are ignored. It is a small reader for this one shape, not a YAML parser.
func parseOverrideList(doc []byte) ([]overridePatch, error) {
	lines := strings.Split(strings.ReplaceAll(string(doc), "\r\n", "\n"), "\n")
	start := -1
	var rest string
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") || t == "---" {
			continue
		}
		if indentOf(l) == 0 && strings.HasPrefix(t, "patches:") {
			start, rest = i, strings.TrimSpace(stripComment(t[len("patches:"):]))
			break
		}
	}
	if start < 0 {
		return nil, errors.New("install override list: no top-level 'patches' key")
	}
	if rest != "" {
		if !strings.HasPrefix(rest, "[") {
			return nil, fmt.Errorf("install override list: 'patches' must be a sequence, got %q", rest)
		}
		flow := rest
		for _, l := range lines[start+1:] {
			flow += " " + strings.TrimSpace(stripComment(l))
		}
		return parseFlowPatches(flow)
	}
	var out []overridePatch
	var cur map[string]string
	itemIndent := -1
	flush := func() error {
		if cur == nil {
			return nil
		}
		if cur["id"] == "" {
			return fmt.Errorf("install override list: patch %d has no id", len(out)+1)
		}
		out = append(out, overridePatch{ID: cur["id"], Title: cur["title"]})
		cur = nil
		return nil
	}
	for _, l := range lines[start+1:] {
		t := strings.TrimSpace(stripComment(l))
		if t == "" {
			continue
		}
		ind := indentOf(l)
		if ind == 0 && !strings.HasPrefix(t, "-") {
			break // the next top-level key
		}
		if strings.HasPrefix(t, "-") && (itemIndent < 0 || ind <= itemIndent) {
			if err := flush(); err != nil {
				return nil, err
			}
			itemIndent = ind
			cur = map[string]string{}
			t = strings.TrimSpace(t[1:])
			if t == "" {
				continue
			}
		}
		if cur == nil {
			return nil, fmt.Errorf("install override list: expected a '-' item, got %q", t)
		}
		if err := setKV(cur, t); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

func parseFlowPatches(s string) ([]overridePatch, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return nil, fmt.Errorf("install override list: unterminated flow sequence %q", s)
	}
	var out []overridePatch
	for _, item := range splitFlow(s[1 : len(s)-1]) {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !strings.HasPrefix(item, "{") || !strings.HasSuffix(item, "}") {
			return nil, fmt.Errorf("install override list: flow item %q must be a {id: ..., title: ...} mapping", item)
		}
		m := map[string]string{}
		for _, kv := range splitFlow(item[1 : len(item)-1]) {
			if err := setKV(m, kv); err != nil {
				return nil, err
			}
		}
		if m["id"] == "" {
			return nil, fmt.Errorf("install override list: patch %d has no id", len(out)+1)
		}
		out = append(out, overridePatch{ID: m["id"], Title: m["title"]})
	}
	return out, nil
}

// splitFlow splits on top-level commas, outside quotes and braces.
func splitFlow(s string) []string {
	var out []string
	depth, start := 0, 0
	unquoted(s, func(i int) bool {
		switch s[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
		return true
	})
	return append(out, s[start:])
}

// unquoted calls fn with the index of every byte outside single or double quotes, until fn
// returns false.
func unquoted(s string, fn func(i int) bool) {
	var quote byte
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case quote != 0:
			if ch == quote {
				quote = 0
			}
		case ch == '\'' || ch == '"':
			quote = ch
		default:
			if !fn(i) {
				return
			}
		}
	}
}

func yamlScalar(v string) (string, error) {
	switch {
	case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
		return strings.ReplaceAll(v[1:len(v)-1], "''", "'"), nil
	case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
		s, err := strconv.Unquote(v)
		if err != nil {
			return "", fmt.Errorf("install override list: bad double-quoted value %s: %w", v, err)
		}
		return s, nil
	}
	return v, nil
}

func indentOf(l string) int {
	return len(l) - len(strings.TrimLeft(l, " \t"))
}

// stripComment drops a " #" comment outside quotes.
func stripComment(l string) string {
	end := len(l)
	unquoted(l, func(i int) bool {
		if l[i] == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t') {
			end = i
			return false
		}
		return true
	})
	return l[:end]
}

// setKV reads "key: value" into m.
func setKV(m map[string]string, kv string) error {
	k, v, ok := strings.Cut(kv, ":")
	if !ok {
		return fmt.Errorf("install override list: expected 'key: value', got %q", strings.TrimSpace(kv))
	}
	val, err := yamlScalar(strings.TrimSpace(v))
	if err != nil {
		return err
	}
	m[strings.TrimSpace(k)] = val
	return nil
}
