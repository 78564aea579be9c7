package httpapi

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MIMECSV is the media type of the CSV exports.
const MIMECSV = "text/csv"

// exportPath matches the routes whose answer may be CSV (reporting's exports).
var exportPath = regexp.MustCompile(`^/v1/tenants/[^/]+/(compliance|failed-patches)/export$`)

// withCSVExport picks the format of an export: the format query parameter ("csv" or "json")
// wins, else an Accept header naming text/csv; grpc-gateway then chooses the CSV marshaler
// by the (exact) Accept value this sets. Any other request passes through untouched.
func withCSVExport(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !exportPath.MatchString(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		format := r.URL.Query().Get("format")
		if format == "" && acceptsCSV(r.Header.Values("Accept")) {
			format = "csv"
		}
		r = r.Clone(r.Context())
		if format == "csv" {
			r.Header.Set("Accept", MIMECSV)
		} else {
			r.Header.Set("Accept", "application/json")
		}
		next.ServeHTTP(w, r)
	})
}

func acceptsCSV(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == MIMECSV {
				return true
			}
		}
	}
	return false
}

// CSVMarshaler renders a list response (a message whose only repeated field holds messages,
// such as ExportComplianceResponse) as CSV: a header of the rows' JSON field names, then one
// line per row, with the values the JSON answer has (enum names, RFC 3339 times, repeated
// values joined with ';'). Anything else (an error status) is JSON.
type CSVMarshaler struct {
	JSON *runtime.JSONPb
}

var _ runtime.Marshaler = CSVMarshaler{}

// rows returns the repeated message field of a list response of our API, nil if m is not one
// (an error status, with its repeated details, is not).
func rows(m proto.Message) protoreflect.FieldDescriptor {
	desc := m.ProtoReflect().Descriptor()
	if !strings.HasPrefix(string(desc.FullName()), "patchwave.") {
		return nil
	}
	var found protoreflect.FieldDescriptor
	fields := desc.Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.IsList() && f.Kind() == protoreflect.MessageKind {
			if found != nil {
				return nil
			}
			found = f
		}
	}
	return found
}

// ContentType implements runtime.Marshaler.
func (c CSVMarshaler) ContentType(v any) string {
	if m, ok := v.(proto.Message); ok && rows(m) != nil {
		return "text/csv; charset=utf-8"
	}
	return c.JSON.ContentType(v)
}

// Marshal implements runtime.Marshaler.
func (c CSVMarshaler) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return c.JSON.Marshal(v)
	}
	f := rows(m)
	if f == nil {
		return c.JSON.Marshal(v)
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	cols := f.Message().Fields()
	header := make([]string, cols.Len())
	for i := range cols.Len() {
		header[i] = cols.Get(i).JSONName()
	}
	if err := w.Write(header); err != nil {
		return nil, err
	}
	list := m.ProtoReflect().Get(f).List()
	for i := range list.Len() {
		row := list.Get(i).Message()
		rec := make([]string, cols.Len())
		for j := range cols.Len() {
			rec[j] = cell(cols.Get(j), row.Get(cols.Get(j)), row.Has(cols.Get(j)))
		}
		if err := w.Write(rec); err != nil {
			return nil, err
		}
	}
	w.Flush()
	return buf.Bytes(), w.Error()
}

// cell renders one field of a row.
func cell(fd protoreflect.FieldDescriptor, v protoreflect.Value, has bool) string {
	if fd.IsList() {
		l := v.List()
		parts := make([]string, l.Len())
		for i := range l.Len() {
			parts[i] = scalar(fd, l.Get(i), true)
		}
		return strings.Join(parts, ";")
	}
	return scalar(fd, v, has)
}

func scalar(fd protoreflect.FieldDescriptor, v protoreflect.Value, has bool) string {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return strconv.Itoa(int(v.Enum()))
	case protoreflect.MessageKind:
		if !has {
			return ""
		}
		if ts, ok := v.Message().Interface().(*timestamppb.Timestamp); ok {
			return ts.AsTime().UTC().Format(time.RFC3339Nano)
		}
		b, err := protojson.Marshal(v.Message().Interface())
		if err != nil {
			return ""
		}
		return string(b)
	case protoreflect.BytesKind:
		return fmt.Sprintf("%x", v.Bytes())
	}
	return v.String()
}

// Unmarshal implements runtime.Marshaler: requests are JSON.
func (c CSVMarshaler) Unmarshal(data []byte, v any) error { return c.JSON.Unmarshal(data, v) }

// NewDecoder implements runtime.Marshaler.
func (c CSVMarshaler) NewDecoder(r io.Reader) runtime.Decoder { return c.JSON.NewDecoder(r) }

// NewEncoder implements runtime.Marshaler.
func (c CSVMarshaler) NewEncoder(w io.Writer) runtime.Encoder { return c.JSON.NewEncoder(w) }
