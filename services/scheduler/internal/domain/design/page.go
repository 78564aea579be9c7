package design

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/patchwave/patchwave/libs/apierr"
)

// Page sizes of lists.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// tokenVersion starts every page token, so a change of format refuses old tokens clearly.
const tokenVersion = "p1"

// Paginate returns one page of items, which are in list order with unique keys (key gives
// them), and the token of the next page ("" on the last). listing names the list and its filter
// ("waves/acme", "requests/acme/OPEN"): a token of another listing is refused. size 0 means
// DefaultPageSize and sizes above MaxPageSize are MaxPageSize; a negative size or a token this
// listing did not give is a *apierr.ValidationError on "pageSize" or "pageToken". after says
// whether key a comes after key b in list order; a token holds the last key of its page, so a
// page is right even when items were added or removed since.
func Paginate[T any](items []T, key func(T) string, after func(a, b string) bool, size int32, token, listing string) ([]T, string, error) {
	var v apierr.Violations
	if size < 0 {
		v.Add("pageSize", fmt.Sprintf("must be from 1 to %d (0 means %d), got %d", MaxPageSize, DefaultPageSize, size))
	}
	n := int(size)
	switch {
	case n == 0:
		n = DefaultPageSize
	case n > MaxPageSize:
		n = MaxPageSize
	}
	start := 0
	if token != "" {
		last, ok := decodeToken(token, listing)
		if !ok {
			v.Add("pageToken", "must be a nextPageToken this list returned (with the same filter)")
		} else {
			start = len(items)
			for i, it := range items {
				if after(key(it), last) {
					start = i
					break
				}
			}
		}
	}
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	end := min(start+n, len(items))
	page := items[start:end]
	next := ""
	if end < len(items) {
		next = encodeToken(listing, key(items[end-1]))
	}
	return page, next, nil
}

// Ascending is Paginate's after for keys listed in increasing order.
func Ascending(a, b string) bool { return a > b }

// Descending is Paginate's after for keys listed in decreasing order.
func Descending(a, b string) bool { return a < b }

func encodeToken(listing, last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tokenVersion + "\x00" + listing + "\x00" + last))
}

func decodeToken(token, listing string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", false
	}
	parts := strings.SplitN(string(b), "\x00", 3)
	if len(parts) != 3 || parts[0] != tokenVersion || parts[1] != listing {
		return "", false
	}
	return parts[2], true
}
