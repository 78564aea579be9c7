package cloudsim

import (
	"encoding/xml"
	"errors"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"
	"unsafe"
)

// This file has what EC2 and STS share: the AWS Query protocol (form-encoded requests, XML
// responses).

// parseQueryForm reads the form of a Query-protocol request: the POST body and the URL query.
// The form's map and the array its value slices share come from a pool and go back when the
// call ends (call.release); the body is parsed in place, its keys and values substrings of it.
func parseQueryForm(c *call) error {
	qf := queryForms.Get().(*queryForm)
	c.qform = qf
	// The body is never written after it is read, so the string shares its bytes rather than
	// copying them.
	err := qf.parse(unsafe.String(unsafe.SliceData(c.body), len(c.body)))
	if err != nil {
		return errf("MalformedQueryString", "the request body is not a form: %v", err)
	}
	form := qf.values
	if c.r.URL.RawQuery != "" {
		for k, v := range c.r.URL.Query() {
			if _, ok := form[k]; !ok {
				form[k] = v
			}
		}
	}
	c.form = form
	c.op = form.Get("Action")
	if c.op == "" {
		return errf("MissingAction", "The request must contain the parameter Action")
	}
	return nil
}

// queryForm is a parsed form kept between calls: a call's form map and the array of its values
// were a sixth of a CreateSnapshots call's allocations. Only the map and the array are reused;
// the strings in them are substrings of the body or of the call's own unescaped bytes, never of
// a pooled buffer, so a handler may keep any of them.
type queryForm struct {
	values url.Values
	vals   []string
}

var queryForms = sync.Pool{New: func() any { return &queryForm{values: make(url.Values, 32), vals: make([]string, 0, 32)} }}

// maxPooledForm is the most keys a form may have and still go back to the pool (a 1000-id
// DescribeInstances would keep its large map for good otherwise).
const maxPooledForm = 256

// release empties the form and returns it to the pool; the call must not use its form after.
func (qf *queryForm) release() {
	if len(qf.vals) > maxPooledForm || len(qf.values) > maxPooledForm {
		return
	}
	clear(qf.values)
	clear(qf.vals) // no body stays reachable from the pool
	qf.vals = qf.vals[:0]
	queryForms.Put(qf)
}

// parseForm is url.ParseQuery with fewer allocations (parseQueryForm uses the form's pooled
// parse).
func parseForm(query string) (url.Values, error) {
	qf := &queryForm{values: make(url.Values, strings.Count(query, "&")+1)}
	err := qf.parse(query)
	return qf.values, err
}

// parse adds query's pairs to the form: url.ParseQuery with fewer allocations. The value slices
// of all keys share one array (a key seen again gets a slice of its own), and every escaped key
// and value of the query is unescaped into one array of bytes. Like ParseQuery it refuses
// semicolons and bad escapes, keeping the first error.
func (qf *queryForm) parse(query string) error {
	form := qf.values
	var unescaped []byte // allocated at the first escape, for the rest of the query
	var first error
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		if strings.Contains(pair, ";") {
			if first == nil {
				first = errors.New("invalid semicolon separator in query")
			}
			continue
		}
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if unescaped == nil && strings.ContainsAny(pair, "%+") {
			unescaped = make([]byte, 0, escapedLen(pair)+escapedLen(query))
		}
		k, err := unescapeForm(&unescaped, k)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		v, err = unescapeForm(&unescaped, v)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if old, ok := form[k]; ok {
			form[k] = append(old, v) // capacity 1: copies, never writes into vals
			continue
		}
		qf.vals = append(qf.vals, v)
		n := len(qf.vals)
		form[k] = qf.vals[n-1 : n : n]
	}
	return first
}

// unescapeForm is url.QueryUnescape, without a call when there is nothing to unescape. The
// unescaped bytes are appended to *buf (parse sizes it for the escaped keys and values of the
// rest of the query at the first escape): the string returned is a view of bytes of buf that
// are never written again.
func unescapeForm(buf *[]byte, s string) (string, error) {
	if !strings.ContainsAny(s, "%+") {
		return s, nil
	}
	b := *buf
	if cap(b)-len(b) < len(s) {
		b = make([]byte, 0, len(s)) // not sized by parse: a new array, the old one's views stay
	}
	start := len(b)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b = append(b, ' ')
		case '%':
			if i+2 >= len(s) || !ishex(s[i+1]) || !ishex(s[i+2]) {
				return url.QueryUnescape(s) // its error, word for word
			}
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	*buf = b
	return unsafe.String(&b[start], len(b)-start), nil
}

// escapedLen is the length of the query's keys and values that have an escape, split as parse
// splits them: the most their unescaped bytes can take.
func escapedLen(query string) int {
	n := 0
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		if !strings.ContainsAny(pair, "%+") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(k, "%+") {
			n += len(k)
		}
		if strings.ContainsAny(v, "%+") {
			n += len(v)
		}
	}
	return n
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// appendIndices appends to dst the positions N present under prefix.N in the form, in
// order. A caller that passes a stack array's slice allocates nothing for the common few
// positions.
func appendIndices(dst []int, form url.Values, prefix string) []int {
	out := dst
	for k := range form {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok || len(rest) < 2 || rest[0] != '.' {
			continue
		}
		rest = rest[1:]
		if i := strings.IndexByte(rest, '.'); i >= 0 {
			rest = rest[:i]
		}
		if n, err := strconv.Atoi(rest); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out) // Filter.1.Name and Filter.1.Value.1 are both position 1
}

// list reads prefix.1, prefix.2, ... (EC2's flattened lists).
func list(form url.Values, prefix string) []string {
	var out []string
	var at [16]int
	for _, n := range appendIndices(at[:0], form, prefix) {
		if v, ok := form[prefix+"."+strconv.Itoa(n)]; ok && len(v) > 0 {
			out = append(out, v[0])
		}
	}
	return out
}

// filter is one EC2 filter: any of Values matches (wildcards * and ?).
type filter struct {
	Name   string
	Values []string
	// wild are the values with a wildcard (* or ?), matched as patterns; set holds the values
	// when there are many (a tracker's DescribeSnapshots names up to 200 sets), so that a
	// candidate is matched in one look-up rather than one comparison per value.
	wild []string
	set  map[string]struct{}
}

// manyValues is how many values a filter has before its values are matched through a set.
const manyValues = 8

func newFilter(name string, values []string) filter {
	f := filter{Name: name, Values: values}
	for _, v := range values {
		if strings.ContainsAny(v, "*?") {
			f.wild = append(f.wild, v)
		}
	}
	if len(values) > manyValues {
		f.set = make(map[string]struct{}, len(values))
		for _, v := range values {
			f.set[v] = struct{}{}
		}
	}
	return f
}

func filters(form url.Values) []filter {
	var out []filter
	var at [16]int
	for _, n := range appendIndices(at[:0], form, "Filter") {
		p := "Filter." + strconv.Itoa(n)
		out = append(out, newFilter(form.Get(p+".Name"), list(form, p+".Value")))
	}
	return out
}

// exact tells whether no value has a wildcard (so an index can answer the filter).
func (f filter) exact() bool { return len(f.wild) == 0 }

func (f filter) match(s string) bool {
	if f.set != nil {
		if _, ok := f.set[s]; ok {
			return true
		}
	} else if slices.Contains(f.Values, s) {
		return true
	}
	for _, v := range f.wild {
		if ok, _ := path.Match(strings.ReplaceAll(v, "/", "\x00"), strings.ReplaceAll(s, "/", "\x00")); ok {
			return true
		}
	}
	return false
}

type tagPair struct {
	Key   string
	Value *string
}

func tags(form url.Values, prefix string) []tagPair {
	var out []tagPair
	var at [16]int
	for _, n := range appendIndices(at[:0], form, prefix) {
		p := prefix + "." + strconv.Itoa(n)
		// Tags are kept for the life of the resource: their strings must not be substrings of
		// the request's body (url.ParseQuery returns substrings where nothing is escaped),
		// which would keep every body alive. Keys repeat across resources and are interned.
		t := tagPair{Key: unique.Make(form.Get(p + ".Key")).Value()}
		if v, ok := form[p+".Value"]; ok && len(v) > 0 {
			val := strings.Clone(v[0])
			t.Value = &val
		}
		out = append(out, t)
	}
	return out
}

// tagSpecs reads TagSpecification.N for one resource type: a new map the caller owns, nil
// when the request has no tags. Values are copied out of the request, keys interned, as tags
// does, without its list of pairs.
func tagSpecs(form url.Values, resourceType string) (map[string]string, error) {
	var out map[string]string
	var specs, positions [16]int
	for _, n := range appendIndices(specs[:0], form, "TagSpecification") {
		p := "TagSpecification." + strconv.Itoa(n)
		rt := form.Get(p + ".ResourceType")
		if rt != resourceType {
			return nil, errf("InvalidParameterValue", "TagSpecification.%d.ResourceType %q: must be %s for this operation", n, rt, resourceType)
		}
		prefix := p + ".Tag"
		for _, m := range appendIndices(positions[:0], form, prefix) {
			q := prefix + "." + strconv.Itoa(m)
			key := unique.Make(form.Get(q + ".Key")).Value()
			if err := checkTagKey(key); err != nil {
				return nil, err
			}
			v := ""
			if vs, ok := form[q+".Value"]; ok && len(vs) > 0 {
				v = vs[0]
			}
			if out == nil {
				out = make(map[string]string, 8)
			}
			out[key] = v
		}
	}
	detachValues(out)
	return out, nil
}

// detachValues copies the map's values out of the request into one string they all share:
// one allocation for a call's tags rather than one per value. The map's values live and die
// together (a snapshot set shares one map), so none keeps the others' bytes alive for long.
func detachValues(m map[string]string) {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	if n == 0 {
		return
	}
	// The array's capacity is exact, so appending never moves it: each value is a view of its
	// own part, never written again.
	all := make([]byte, 0, n)
	for k, v := range m {
		if v == "" {
			continue
		}
		start := len(all)
		all = append(all, v...)
		m[k] = unsafe.String(&all[start], len(v))
	}
}

func checkTagKey(k string) error {
	switch {
	case k == "":
		return errf("InvalidParameterValue", "Tag key must not be empty")
	case len(k) > 128:
		return errf("InvalidParameterValue", "Tag key %q: must be at most 128 characters", k)
	case len(k) >= 4 && strings.EqualFold(k[:4], "aws:"): // no lower-cased copy of every key
		return errf("InvalidParameterValue", "Tag key %q: keys starting with aws: are reserved", k)
	}
	return nil
}

func formBool(form url.Values, key string) bool {
	v := form.Get(key)
	if v == "" {
		return false // absent: no parse, whose error would be allocated on every call
	}
	b, _ := strconv.ParseBool(v)
	return b
}

// formInt reads an optional integer; ok is false when absent.
func formInt(form url.Values, key string) (n int, ok bool, err error) {
	v := form.Get(key)
	if v == "" {
		return 0, false, nil
	}
	n, err = strconv.Atoi(v)
	if err != nil {
		return 0, false, errf("InvalidParameterValue", "%s %q: must be an integer", key, v)
	}
	return n, true, nil
}

const xmlTimeLayout = "2006-01-02T15:04:05.000Z"

func xmlTime(t time.Time) string {
	var b [24]byte
	return string(appendXMLTime(b[:0], t))
}

// appendXMLTime appends t.UTC().Format(xmlTimeLayout), digit by digit: the layout parser of
// AppendFormat was a third of the cost of writing an instance.
func appendXMLTime(dst []byte, t time.Time) []byte {
	u := t.UTC()
	year, month, day := u.Date()
	if year < 0 || year > 9999 {
		return u.AppendFormat(dst, xmlTimeLayout)
	}
	hour, minute, sec := u.Clock()
	ms := u.Nanosecond() / 1e6
	two := func(dst []byte, n int) []byte { return append(dst, byte('0'+n/10), byte('0'+n%10)) }
	dst = two(dst, year/100)
	dst = two(dst, year%100)
	dst = append(dst, '-')
	dst = two(dst, int(month))
	dst = append(dst, '-')
	dst = two(dst, day)
	dst = append(dst, 'T')
	dst = two(dst, hour)
	dst = append(dst, ':')
	dst = two(dst, minute)
	dst = append(dst, ':')
	dst = two(dst, sec)
	dst = append(dst, '.', byte('0'+ms/100))
	dst = two(dst, ms%100)
	return append(dst, 'Z')
}

// writeQueryResult writes a Query-protocol result with its request id.
func writeQueryResult(rw http.ResponseWriter, c *call, v any) {
	if m, ok := v.(interface{ setMeta(string) }); ok {
		m.setMeta(c.requestID)
	}
	writeXML(rw, http.StatusOK, v)
}

// writeXML writes an XML document.
func writeXML(rw http.ResponseWriter, status int, v any) {
	out, err := xml.Marshal(v)
	if err != nil {
		http.Error(rw, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	out = append([]byte(xml.Header), out...)
	writeBody(rw, status, xmlContentType, out)
}

// Header values shared by every response (net/http only reads them).
var (
	xmlContentType  = []string{"text/xml;charset=UTF-8"}
	jsonContentType = []string{"application/x-amz-json-1.1"}
)

// writeBody writes a response with its Content-Type and Content-Length. The header map is
// written directly (the keys are canonical already): Header().Set would allocate a slice per
// value on every call.
func writeBody(rw http.ResponseWriter, status int, contentType []string, body []byte) {
	h := rw.Header()
	h["Content-Type"] = contentType
	h["Content-Length"] = contentLength(len(body))
	rw.WriteHeader(status)
	_, _ = rw.Write(body) //nolint:gosec // G705: an API document served as XML or JSON, not HTML
}

// contentLengths are the Content-Length values of the bodies shorter than 8 KiB (most answers),
// each made at its first use and then shared: net/http only reads a header's values, and two
// allocations a call are saved.
var contentLengths [8 << 10]atomic.Pointer[[]string]

// contentLength is the Content-Length header's value for a body of n bytes.
func contentLength(n int) []string {
	if n >= len(contentLengths) {
		return []string{strconv.Itoa(n)}
	}
	if v := contentLengths[n].Load(); v != nil {
		return *v
	}
	v := []string{strconv.Itoa(n)}
	contentLengths[n].Store(&v)
	return v
}
