package feeds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/gocsaf/csaf/v3/csaf"
	"github.com/gocsaf/csaf/v3/util"
)

// CSAFProvider discovers a CSAF 2.0 provider's advisories: it loads provider-metadata.json
// (from its URL, or from the domain's /.well-known/csaf/ location, security.txt or DNS, with
// the CSAF module's loader, which validates it against the schema), lists the advisories of
// its ROLIE feeds (or of its directory's changes.csv) with the module's file processor, and
// fetches each advisory conditionally.
type CSAFProvider struct {
	// Provider is the provider-metadata.json URL (https://...) or the provider's domain.
	Provider string
	Client   *http.Client
	Log      *slog.Logger
}

// Fetch discovers and fetches the provider's advisories.
func (c *CSAFProvider) Fetch(ctx context.Context, validators Validators, emit func(Document) error) (Validators, error) {
	loader := csaf.NewProviderMetadataLoader(c.Client)
	lpm := loader.LoadWithContext(ctx, c.Provider)
	if !lpm.Valid() {
		var msgs []string
		for _, m := range lpm.Messages {
			msgs = append(msgs, m.Message)
		}
		return nil, fmt.Errorf("provider metadata %s: %s", c.Provider, strings.Join(msgs, "; "))
	}
	base, err := url.Parse(lpm.URL)
	if err != nil {
		return nil, fmt.Errorf("provider metadata url %q: %w", lpm.URL, err)
	}
	afp := csaf.NewAdvisoryFileProcessor(c.Client, util.NewPathEval(), lpm.Document, base)
	afp.Log = func(level slog.Level, format string, args ...any) {
		if c.Log != nil {
			c.Log.Log(ctx, level, "csaf provider: "+format, args...)
		}
	}
	var files []csaf.AdvisoryFile
	if err := afp.ProcessWithContext(ctx, func(_ csaf.TLPLabel, fs []csaf.AdvisoryFile) error {
		files = append(files, fs...)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("provider %s advisories: %w", c.Provider, err)
	}
	if len(files) == 0 {
		return nil, errors.New("provider " + c.Provider + ": its feeds list no advisory")
	}
	next := Validators{}
	for _, f := range files {
		u := f.URL()
		data, v, err := get(ctx, c.Client, u, validators[u])
		if err != nil {
			if old := validators[u]; old != nil {
				next[u] = old
			}
			if err := emit(Document{Name: u, Err: err}); err != nil {
				return nil, err
			}
			continue
		}
		next[u] = v
		if data == nil {
			continue
		}
		if err := c.checkHash(ctx, f, data); err != nil {
			delete(next, u) // fetch it again next time
			if err := emit(Document{Name: u, Err: err}); err != nil {
				return nil, err
			}
			continue
		}
		if err := emit(Document{Name: u, Data: data}); err != nil {
			return nil, err
		}
	}
	return next, nil
}

// checkHash compares the advisory with the SHA-256 the provider publishes beside it (the
// OpenPGP signature is not verified).
func (c *CSAFProvider) checkHash(ctx context.Context, f csaf.AdvisoryFile, data []byte) error {
	hu := f.SHA256URL()
	if hu == "" {
		return nil
	}
	sum, _, err := get(ctx, c.Client, hu, nil)
	if err != nil {
		return fmt.Errorf("hash: %w", err)
	}
	fields := strings.Fields(string(sum))
	if len(fields) == 0 {
		return fmt.Errorf("hash %s: empty", hu)
	}
	want := strings.ToLower(fields[0])
	got := sha256.Sum256(data)
	if hex.EncodeToString(got[:]) != want {
		return fmt.Errorf("hash %s: the advisory's SHA-256 is %x, the provider says %s", hu, got, want)
	}
	return nil
}
