// Package config reads settings from environment variables for every
// Patchwave command, and masks secrets before a config is logged.
//
// The environment is injected (Env) so tests never touch the process
// environment. An unset or empty variable yields the default; a set one
// that does not parse is an error naming the variable and the expected
// format, so a typo fails start-up instead of silently using the default.
package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env reads variables through a getenv function.
type Env struct {
	getenv func(string) string
}

// New returns an Env reading variables with getenv.
func New(getenv func(key string) string) Env {
	return Env{getenv: getenv}
}

// OS returns an Env backed by the process environment (os.Getenv).
func OS() Env {
	return New(os.Getenv)
}

// Map returns an Env backed by m, for tests.
func Map(m map[string]string) Env {
	return New(func(key string) string { return m[key] })
}

// ParseError reports a variable whose value does not parse.
type ParseError struct {
	// Key is the variable's name.
	Key string
	// Value is the value found.
	Value string
	// Expected describes the accepted format.
	Expected string
}

// Error implements error.
func (e *ParseError) Error() string {
	return fmt.Sprintf("config: %s=%q: expected %s", e.Key, e.Value, e.Expected)
}

// lookup returns the trimmed value of key and whether it is set and non-empty.
func (e Env) lookup(key string) (string, bool) {
	if e.getenv == nil {
		return "", false
	}
	v := strings.TrimSpace(e.getenv(key))
	return v, v != ""
}

// String returns the value of key, or def when it is unset or empty. The
// value is returned as set, surrounding spaces included.
func (e Env) String(key, def string) string {
	if e.getenv == nil {
		return def
	}
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

// Int returns the value of key as a decimal int, or def when it is unset.
func (e Env) Int(key string, def int) (int, error) {
	v, ok := e.lookup(key)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return def, &ParseError{Key: key, Value: v, Expected: "a whole number such as 8080"}
	}
	return n, nil
}

// Duration returns the value of key as a Go duration ("30s", "1m30s",
// "250ms"), or def when it is unset.
func (e Env) Duration(key string, def time.Duration) (time.Duration, error) {
	v, ok := e.lookup(key)
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return def, &ParseError{Key: key, Value: v, Expected: `a duration with a unit such as "30s", "1m30s" or "250ms"`}
	}
	return d, nil
}

// Bool returns the value of key as a boolean, or def when it is unset.
// Accepted: true/false, 1/0, t/f, yes/no and on/off, in any case.
func (e Env) Bool(key string, def bool) (bool, error) {
	v, ok := e.lookup(key)
	if !ok {
		return def, nil
	}
	switch strings.ToLower(v) {
	case "1", "t", "true", "yes", "y", "on":
		return true, nil
	case "0", "f", "false", "no", "n", "off":
		return false, nil
	}
	return def, &ParseError{Key: key, Value: v, Expected: "true or false (also 1/0, yes/no, on/off)"}
}

// Float returns the value of key as a float64, or def when it is unset.
func (e Env) Float(key string, def float64) (float64, error) {
	v, ok := e.lookup(key)
	if !ok {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return def, &ParseError{Key: key, Value: v, Expected: "a number such as 0.5 or 12"}
	}
	return f, nil
}
