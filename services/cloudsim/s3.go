package cloudsim

import (
	"bufio"
	"bytes"
	"crypto/md5" //nolint:gosec // S3 ETags are MD5 by definition, not a security use
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

const s3Namespace = "http://s3.amazonaws.com/doc/2006-03-01/"

func s3Service() *service {
	return &service{
		name: "s3",
		handlers: map[string]handler{
			"ListBuckets": s3ListBuckets, "CreateBucket": s3CreateBucket, "HeadBucket": s3HeadBucket,
			"PutObject": s3PutObject, "GetObject": s3GetObject, "HeadObject": s3GetObject,
			"DeleteObject": s3DeleteObject, "ListObjectsV2": s3ListObjectsV2,
		},
		operation: s3Operation,
		write: func(rw http.ResponseWriter, c *call, v any) {
			res := v.(*s3Result)
			for k, vals := range res.header {
				rw.Header()[k] = vals
			}
			rw.Header().Set("X-Amz-Request-Id", c.requestID)
			if res.xml != nil {
				out, err := xml.Marshal(res.xml)
				if err != nil {
					http.Error(rw, err.Error(), http.StatusInternalServerError)
					return
				}
				res.body = append([]byte(xml.Header), out...)
				rw.Header().Set("Content-Type", "application/xml")
			}
			if c.r.Method != http.MethodHead {
				rw.Header().Set("Content-Length", strconv.Itoa(len(res.body)))
			}
			status := res.status
			if status == 0 {
				status = http.StatusOK
			}
			rw.WriteHeader(status)
			if c.r.Method != http.MethodHead {
				_, _ = rw.Write(res.body) //nolint:gosec // G705: an S3 object or XML document, served with its own content type
			}
		},
		writeErr: func(rw http.ResponseWriter, c *call, e *apiError) {
			rw.Header().Set("X-Amz-Request-Id", c.requestID)
			if c.r.Method == http.MethodHead {
				rw.WriteHeader(e.Status)
				return
			}
			writeXML(rw, e.Status, s3Error{Code: e.Code, Message: e.Message, RequestID: c.requestID})
		},
		unknownKey:   apiError{"InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.", 403},
		badSignature: apiError{"SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.", 403},
		expired:      apiError{"ExpiredToken", "The provided token has expired.", 400},
		throttle:     apiError{"SlowDown", "Please reduce your request rate.", 503},
		internal:     apiError{"InternalError", "We encountered an internal error. Please try again.", 500},
	}
}

type s3Error struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	RequestID string   `xml:"RequestId"`
}

// s3Result is an S3 response: status, headers, and a body or an XML document.
type s3Result struct {
	status int
	header http.Header
	body   []byte
	xml    any
}

// s3Path splits a path-style request path into bucket and key.
func s3Path(c *call) (bucketName, key string) {
	p := strings.TrimPrefix(c.r.URL.Path, "/")
	bucketName, key, _ = strings.Cut(p, "/")
	return bucketName, key
}

func s3Operation(c *call) error {
	b, k := s3Path(c)
	q := c.r.URL.Query()
	switch m := c.r.Method; {
	case b == "" && m == http.MethodGet:
		c.op = "ListBuckets"
	case b == "":
		return errf("MethodNotAllowed", "The specified method is not allowed against this resource.")
	case k == "" && m == http.MethodPut:
		c.op = "CreateBucket"
	case k == "" && m == http.MethodHead:
		c.op = "HeadBucket"
	case k == "" && m == http.MethodGet && q.Get("list-type") == "2":
		c.op = "ListObjectsV2"
	case k == "":
		return errf("NotImplemented", "cloudsim's S3 emulates CreateBucket, HeadBucket, ListObjectsV2, PutObject, GetObject, HeadObject and DeleteObject (path style)")
	case m == http.MethodPut:
		c.op = "PutObject"
	case m == http.MethodGet:
		c.op = "GetObject"
	case m == http.MethodHead:
		c.op = "HeadObject"
	case m == http.MethodDelete:
		c.op = "DeleteObject"
	default:
		return errf("MethodNotAllowed", "The specified method is not allowed against this resource.")
	}
	return nil
}

var bucketNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func (c *call) ownBucket(w *world, name string) (*bucket, error) {
	b := w.buckets[name]
	if b == nil {
		return nil, errf("NoSuchBucket", "The specified bucket does not exist")
	}
	if b.Account != c.id.Account {
		return nil, errf("AccessDenied", "Access Denied")
	}
	return b, nil
}

func s3ListBuckets(c *call) (any, error) {
	type bucketXML struct {
		Name         string `xml:"Name"`
		CreationDate string `xml:"CreationDate"`
	}
	type result struct {
		XMLName xml.Name    `xml:"ListAllMyBucketsResult"`
		Xmlns   string      `xml:"xmlns,attr"`
		OwnerID string      `xml:"Owner>ID"`
		Buckets []bucketXML `xml:"Buckets>Bucket"`
	}
	res := result{Xmlns: s3Namespace, OwnerID: c.id.Account}
	err := c.view(func(w *world, _ time.Time) error {
		res.Buckets = res.Buckets[:0] // view may run this twice
		for _, name := range sortedKeys(w.buckets) {
			if b := w.buckets[name]; b.Account == c.id.Account {
				res.Buckets = append(res.Buckets, bucketXML{b.Name, xmlTime(b.Created)})
			}
		}
		return nil
	})
	return &s3Result{xml: res}, err
}

func s3CreateBucket(c *call) (any, error) {
	name, _ := s3Path(c)
	if !bucketNamePattern.MatchString(name) || strings.Contains(name, "..") {
		return nil, errf("InvalidBucketName", "The specified bucket is not valid: 3-63 lowercase letters, digits, dots and hyphens")
	}
	err := c.s.update(func(w *world, now time.Time) error {
		if b := w.buckets[name]; b != nil {
			if b.Account == c.id.Account {
				return &apiError{"BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.", 409}
			}
			return &apiError{"BucketAlreadyExists", "The requested bucket name is not available.", 409}
		}
		b := &bucket{Name: name, Account: c.id.Account, Region: c.region, Created: now}
		w.buckets[name] = b
		w.objects[name] = map[string]*object{}
		w.markBucket(b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &s3Result{header: http.Header{"Location": {"/" + name}}}, nil
}

func s3HeadBucket(c *call) (any, error) {
	name, _ := s3Path(c)
	err := c.view(func(w *world, _ time.Time) error {
		_, err := c.ownBucket(w, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &s3Result{header: http.Header{"X-Amz-Bucket-Region": {c.region}}}, nil
}

// s3Payload is the object body: the request body checked against its signed SHA-256, or
// decoded from aws-chunked encoding.
func s3Payload(c *call) ([]byte, error) {
	declared := c.r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case strings.HasPrefix(declared, "STREAMING-"):
		return decodeAWSChunked(c.body)
	case declared == "" || declared == "UNSIGNED-PAYLOAD":
		return c.body, nil
	default:
		sum := sha256.Sum256(c.body)
		if !strings.EqualFold(hex.EncodeToString(sum[:]), declared) {
			return nil, errf("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
		}
		return c.body, nil
	}
}

// decodeAWSChunked reads aws-chunked content: "<hex size>[;chunk-signature=...]\r\n<data>\r\n"
// chunks ending with a zero-size chunk and optional trailers. Chunk signatures are not checked.
func decodeAWSChunked(body []byte) ([]byte, error) {
	r := bufio.NewReader(bytes.NewReader(body))
	var out []byte
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, errf("IncompleteBody", "aws-chunked body ends inside a chunk header")
		}
		sizeHex, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		size, err := strconv.ParseInt(sizeHex, 16, 64)
		if err != nil || size < 0 {
			return nil, errf("InvalidRequest", "aws-chunked body: bad chunk size %q", sizeHex)
		}
		if size == 0 {
			return out, nil
		}
		chunk := make([]byte, size)
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, errf("IncompleteBody", "aws-chunked body ends inside a chunk")
		}
		out = append(out, chunk...)
		if _, err := r.ReadString('\n'); err != nil {
			return nil, errf("IncompleteBody", "aws-chunked body: chunk not terminated")
		}
	}
}

func s3PutObject(c *call) (any, error) {
	name, key := s3Path(c)
	data, err := s3Payload(c)
	if err != nil {
		return nil, err
	}
	sum := md5.Sum(data) //nolint:gosec // S3 ETag
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	err = c.s.update(func(w *world, now time.Time) error {
		if _, err := c.ownBucket(w, name); err != nil {
			return err
		}
		o := &object{Bucket: name, Key: key, Data: data, ETag: etag, ContentType: c.r.Header.Get("Content-Type"), Modified: now}
		w.objects[name][key] = o
		w.markObject(o)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &s3Result{header: http.Header{"Etag": {etag}}}, nil
}

func s3GetObject(c *call) (any, error) {
	name, key := s3Path(c)
	var o *object
	err := c.view(func(w *world, _ time.Time) error {
		if _, err := c.ownBucket(w, name); err != nil {
			return err
		}
		o = w.objects[name][key]
		if o == nil {
			if c.r.Method == http.MethodHead {
				return &apiError{"NotFound", "Not Found", 404}
			}
			return &apiError{"NoSuchKey", "The specified key does not exist.", 404}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ct := o.ContentType
	if ct == "" {
		ct = "binary/octet-stream"
	}
	h := http.Header{"Etag": {o.ETag}, "Last-Modified": {o.Modified.UTC().Format(http.TimeFormat)}, "Content-Type": {ct},
		"Accept-Ranges": {"bytes"}}
	if c.r.Method == http.MethodHead {
		h.Set("Content-Length", strconv.Itoa(len(o.Data)))
	}
	return &s3Result{header: h, body: o.Data}, nil
}

func s3DeleteObject(c *call) (any, error) {
	name, key := s3Path(c)
	err := c.s.update(func(w *world, _ time.Time) error {
		if _, err := c.ownBucket(w, name); err != nil {
			return err
		}
		if w.objects[name][key] != nil {
			delete(w.objects[name], key)
			w.markDeleted("object", name+"/"+key)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &s3Result{status: http.StatusNoContent}, nil
}

func s3ListObjectsV2(c *call) (any, error) {
	name, _ := s3Path(c)
	q := c.r.URL.Query()
	prefix, start := q.Get("prefix"), q.Get("start-after")
	maxKeys := 1000
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, errf("InvalidArgument", "max-keys %q: must be a non-negative integer", v)
		}
		maxKeys = min(n, 1000)
	}
	if t := q.Get("continuation-token"); t != "" {
		k, ok := parseKeyToken(t)
		if !ok {
			return nil, errf("InvalidArgument", "The continuation token provided is incorrect")
		}
		start = k
	}
	type content struct {
		Key          string `xml:"Key"`
		LastModified string `xml:"LastModified"`
		ETag         string `xml:"ETag"`
		Size         int    `xml:"Size"`
		StorageClass string `xml:"StorageClass"`
	}
	type result struct {
		XMLName               xml.Name  `xml:"ListBucketResult"`
		Xmlns                 string    `xml:"xmlns,attr"`
		Name                  string    `xml:"Name"`
		Prefix                string    `xml:"Prefix"`
		KeyCount              int       `xml:"KeyCount"`
		MaxKeys               int       `xml:"MaxKeys"`
		IsTruncated           bool      `xml:"IsTruncated"`
		Contents              []content `xml:"Contents"`
		ContinuationToken     string    `xml:"ContinuationToken,omitempty"`
		NextContinuationToken string    `xml:"NextContinuationToken,omitempty"`
		StartAfter            string    `xml:"StartAfter,omitempty"`
	}
	res := result{Xmlns: s3Namespace, Name: name, Prefix: prefix, MaxKeys: maxKeys, ContinuationToken: q.Get("continuation-token"),
		StartAfter: q.Get("start-after")}
	err := c.view(func(w *world, _ time.Time) error {
		if _, err := c.ownBucket(w, name); err != nil {
			return err
		}
		objs := w.objects[name]
		keys := make([]string, 0, len(objs))
		for k := range objs {
			if strings.HasPrefix(k, prefix) && k > start {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		if len(keys) > maxKeys {
			res.IsTruncated = true
			keys = keys[:maxKeys]
			if maxKeys > 0 {
				res.NextContinuationToken = keyToken(keys[len(keys)-1])
			}
		}
		for _, k := range keys {
			o := objs[k]
			res.Contents = append(res.Contents, content{k, xmlTime(o.Modified), o.ETag, len(o.Data), "STANDARD"})
		}
		res.KeyCount = len(res.Contents)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &s3Result{xml: res}, nil
}

func keyToken(k string) string { return hex.EncodeToString([]byte("k:" + k)) }

func parseKeyToken(t string) (string, bool) {
	b, err := hex.DecodeString(t)
	if err != nil || !bytes.HasPrefix(b, []byte("k:")) {
		return "", false
	}
	return string(b[2:]), true
}

// String makes s3Result printable in logs.
func (r *s3Result) String() string { return fmt.Sprintf("s3 %d (%d bytes)", r.status, len(r.body)) }
