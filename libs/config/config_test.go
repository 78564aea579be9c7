package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/config"
)

func TestString(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"an unset variable gives the default", nil, "def"},
		{"an empty variable gives the default", map[string]string{"K": ""}, "def"},
		{"a set variable is returned as set", map[string]string{"K": " nats://x "}, " nats://x "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, config.Map(tt.env).String("K", "def"))
		})
	}
}

func TestInt(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    int
		wantErr string
	}{
		{"an unset variable gives the default", "", 7, ""},
		{"a number is parsed", "8080", 8080, ""},
		{"a negative number is parsed", "-3", -3, ""},
		{"surrounding spaces are ignored", " 42 ", 42, ""},
		{"text fails naming the variable and format", "eighty", 7, `config: PORT="eighty": expected a whole number such as 8080`},
		{"a fraction fails", "1.5", 7, `expected a whole number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Map(map[string]string{"PORT": tt.value}).Int("PORT", 7)
			require.Equal(t, tt.want, got)
			requireErr(t, err, tt.wantErr)
		})
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    time.Duration
		wantErr string
	}{
		{"an unset variable gives the default", "", time.Second, ""},
		{"a duration with a unit is parsed", "1m30s", 90 * time.Second, ""},
		{"milliseconds are parsed", "250ms", 250 * time.Millisecond, ""},
		{"a bare number fails naming the variable and format", "30", time.Second, `config: TIMEOUT="30": expected a duration with a unit such as "30s"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Map(map[string]string{"TIMEOUT": tt.value}).Duration("TIMEOUT", time.Second)
			require.Equal(t, tt.want, got)
			requireErr(t, err, tt.wantErr)
		})
	}
}

func TestBool(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		def     bool
		want    bool
		wantErr string
	}{
		{"an unset variable gives the default", "", true, true, ""},
		{"true is true", "true", false, true, ""},
		{"TRUE in capitals is true", "TRUE", false, true, ""},
		{"1 is true", "1", false, true, ""},
		{"yes is true", "yes", false, true, ""},
		{"on is true", "on", false, true, ""},
		{"false is false", "false", true, false, ""},
		{"0 is false", "0", true, false, ""},
		{"no is false", "no", true, false, ""},
		{"off is false", "off", true, false, ""},
		{"anything else fails naming the variable and format", "maybe", true, true, `config: DEBUG="maybe": expected true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Map(map[string]string{"DEBUG": tt.value}).Bool("DEBUG", tt.def)
			require.Equal(t, tt.want, got)
			requireErr(t, err, tt.wantErr)
		})
	}
}

func TestFloat(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    float64
		wantErr string
	}{
		{"an unset variable gives the default", "", 0.25, ""},
		{"a fraction is parsed", "0.5", 0.5, ""},
		{"a whole number is parsed", "12", 12, ""},
		{"text fails naming the variable and format", "half", 0.25, `config: RATIO="half": expected a number such as 0.5 or 12`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Map(map[string]string{"RATIO": tt.value}).Float("RATIO", 0.25)
			require.InDelta(t, tt.want, got, 1e-12)
			requireErr(t, err, tt.wantErr)
		})
	}
}

func TestParseErrorCarriesTheDetails(t *testing.T) {
	_, err := config.Map(map[string]string{"N": "x"}).Int("N", 0)
	var pe *config.ParseError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "N", pe.Key)
	require.Equal(t, "x", pe.Value)
}

func TestNewReadsThroughTheGivenFunction(t *testing.T) {
	var asked []string
	env := config.New(func(key string) string {
		asked = append(asked, key)
		return "v"
	})
	require.Equal(t, "v", env.String("A", ""))
	require.Equal(t, []string{"A"}, asked)
}

func TestOSReadsTheProcessEnvironment(t *testing.T) {
	t.Setenv("PATCHWAVE_CONFIG_TEST", "from-os")
	require.Equal(t, "from-os", config.OS().String("PATCHWAVE_CONFIG_TEST", "def"))
}

func TestZeroEnvGivesDefaults(t *testing.T) {
	var env config.Env
	require.Equal(t, "def", env.String("K", "def"))
	n, err := env.Int("K", 3)
	require.NoError(t, err)
	require.Equal(t, 3, n)
}

func requireErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		require.NoError(t, err)
		return
	}
	require.ErrorContains(t, err, want)
}
