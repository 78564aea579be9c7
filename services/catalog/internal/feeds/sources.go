// Package feeds polls the vendors' advisory feeds: sources of documents (a local directory,
// HTTP(S) URLs with ETag / If-Modified-Since, an S3 bucket prefix, a CSAF 2.0 provider found
// through its provider-metadata.json and ROLIE feeds), each on its own schedule (daily by
// default), retried with a backoff when it fails, and never blocking the others. Each
// document goes to the catalog's ingest; a document that cannot be read is counted and named
// in the source's state and never stops the rest of the feed.
package feeds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/advisory"
)

// Document is one fetched document.
type Document struct {
	// Name is the file name, URL or object key.
	Name string
	Data []byte
	// Err is set when the document was found but could not be fetched: that document fails,
	// the rest of the feed goes on.
	Err error
}

// Validators are the HTTP validators of fetched URLs, by URL.
type Validators map[string]*catalogv1.Validator

// Source fetches the documents of one feed. Fetch calls emit for every document that may have
// changed since the poll that returned validators, and returns the validators to send next
// time. An error from emit stops the fetch; an error of the source itself (unreachable,
// malformed listing) fails the poll.
type Source interface {
	Fetch(ctx context.Context, validators Validators, emit func(Document) error) (Validators, error)
}

// documentExtensions are the files a directory source reads.
var documentExtensions = []string{".json", ".xml"}

// Dir reads every .json and .xml file under a directory (recursively, in name order). A file
// whose size and modification time did not change since the last poll is not read again.
type Dir struct {
	Path string
	// seen holds "size/mtime" per file of the last poll; kept in memory only (after a restart
	// the first poll reads every file, and the ingest's digest check skips the unchanged).
	seen map[string]string
}

// Fetch walks the directory. It reads through an os.Root, so a symbolic link cannot lead it
// outside the directory.
func (d *Dir) Fetch(ctx context.Context, _ Validators, emit func(Document) error) (Validators, error) {
	root, err := os.OpenRoot(d.Path)
	if err != nil {
		return nil, fmt.Errorf("directory %s: %w", d.Path, err)
	}
	defer func() { _ = root.Close() }()
	fsys := root.FS()
	seen := map[string]string{}
	err = fs.WalkDir(fsys, ".", func(rel string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if e.IsDir() || !slices.Contains(documentExtensions, strings.ToLower(path.Ext(rel))) {
			return nil
		}
		name := filepath.Join(d.Path, filepath.FromSlash(rel))
		info, err := e.Info()
		if err != nil {
			return emit(Document{Name: name, Err: err})
		}
		stamp := strconv.FormatInt(info.Size(), 10) + "/" + strconv.FormatInt(info.ModTime().UnixNano(), 10)
		seen[rel] = stamp
		if d.seen[rel] == stamp {
			return nil
		}
		data, err := fs.ReadFile(fsys, rel)
		if err != nil {
			return emit(Document{Name: name, Err: err})
		}
		return emit(Document{Name: name, Data: data})
	})
	if err != nil {
		return nil, err
	}
	d.seen = seen
	return nil, nil
}

// HTTP fetches a list of URLs, each one document, sending If-None-Match and If-Modified-Since
// from the last poll's answer: a 304 costs nothing.
type HTTP struct {
	URLs   []string
	Client *http.Client
}

// Fetch gets every URL. A URL that fails fails its document; the poll fails when all do.
func (h *HTTP) Fetch(ctx context.Context, validators Validators, emit func(Document) error) (Validators, error) {
	next := Validators{}
	var failed []error
	for _, u := range h.URLs {
		data, v, err := get(ctx, h.Client, u, validators[u])
		if err != nil {
			failed = append(failed, err)
			if old := validators[u]; old != nil {
				next[u] = old
			}
			if len(h.URLs) > 1 {
				if err := emit(Document{Name: u, Err: err}); err != nil {
					return nil, err
				}
			}
			continue
		}
		next[u] = v
		if data == nil {
			continue // not modified
		}
		if err := emit(Document{Name: u, Data: data}); err != nil {
			return nil, err
		}
	}
	if len(failed) == len(h.URLs) && len(failed) > 0 {
		return nil, errors.Join(failed...)
	}
	return next, nil
}

// get fetches u conditionally; data is nil when the server answered 304 Not Modified.
func get(ctx context.Context, c *http.Client, u string, v *catalogv1.Validator) ([]byte, *catalogv1.Validator, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if v.GetEtag() != "" {
		req.Header.Set("If-None-Match", v.GetEtag())
	}
	if v.GetLastModified() != "" {
		req.Header.Set("If-Modified-Since", v.GetLastModified())
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return nil, v, nil
	case resp.StatusCode != http.StatusOK:
		return nil, nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, advisory.MaxDocumentSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(data) > advisory.MaxDocumentSize {
		return nil, nil, fmt.Errorf("GET %s: larger than %d bytes", u, advisory.MaxDocumentSize)
	}
	return data, &catalogv1.Validator{Etag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}, nil
}
