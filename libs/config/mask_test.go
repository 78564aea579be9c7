package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/config"
)

func TestMask(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"a secret keeps nothing", "s3cret-token", "****"},
		{"a one-letter secret keeps nothing either", "x", "****"},
		{"an empty secret stays empty to show it is unset", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, config.Mask(tt.in))
		})
	}
}

func TestMaskURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"a password is hidden and the user kept", "nats://alice:s3cret@nats:4222", "nats://alice:****@nats:4222"},
		{"a password without a user is hidden", "redis://:s3cret@redis:6379/0", "redis://:****@redis:6379/0"},
		{"an escaped password is hidden", "postgres://bob:p%40ss@db/x?sslmode=disable", "postgres://bob:****@db/x?sslmode=disable"},
		{"a URL without userinfo is unchanged", "nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"a user without a password is unchanged", "nats://alice@nats:4222", "nats://alice@nats:4222"},
		{"a host:port is unchanged", "127.0.0.1:6379", "127.0.0.1:6379"},
		{"an empty value stays empty", "", ""},
		{"every URL of a list is masked", "nats://a:pw1@n1:4222, nats://b:pw2@n2:4222", "nats://a:****@n1:4222, nats://b:****@n2:4222"},
		{"a comma inside a password does not leak the password", "redis://:pa,ss@redis:6379", "redis://:****@redis:6379"},
		{"an unparsable value is hidden whole", "redis://:s3cret@redis:port\x7f", "****"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, config.MaskURL(tt.in))
		})
	}
}
