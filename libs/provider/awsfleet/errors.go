package awsfleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/ratelimit"
)

// Error is a failed AWS call after the SDK's retries: it names the operation, the account and
// AWS's error code, and wraps the provider sentinel it maps to (ErrThrottled, ErrAccessDenied,
// ErrInvalidArgument, ErrNotFound, ErrInstanceNotRunning) as well as the SDK's error.
type Error struct {
	// Op is "<service> <Operation>", e.g. "ec2 DescribeInstances".
	Op string
	// Account is the AWS account the call went to.
	Account string
	// Code is AWS's error code ("RequestLimitExceeded"), empty for transport errors.
	Code string
	// Kind is the provider sentinel the code maps to; nil when none does.
	Kind error
	// Err is the SDK's error.
	Err error
	// Transient is true for 5xx and transport errors (Retryable).
	Transient bool
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Account != "" {
		b.WriteString(" in account ")
		b.WriteString(e.Account)
	}
	b.WriteString(": ")
	if e.Kind != nil {
		b.WriteString(e.Kind.Error())
		b.WriteString(": ")
	}
	var ar *assumeRoleError
	if errors.As(e.Err, &ar) {
		b.WriteString(ar.Error())
		return b.String()
	}
	if e.Code != "" {
		b.WriteString(e.Code)
		b.WriteString(": ")
	}
	b.WriteString(message(e.Err))
	return b.String()
}

// Unwrap returns the sentinel and the SDK's error.
func (e *Error) Unwrap() []error {
	if e.Kind != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Err}
}

// Retryable reports whether retrying later may succeed: throttling, 5xx and transport errors.
func (e *Error) Retryable() bool { return e.Transient || errors.Is(e.Kind, provider.ErrThrottled) }

// message is the most specific message in err: the API error's own message when there is one.
func message(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorMessage() != "" {
		return ae.ErrorMessage()
	}
	return err.Error()
}

// assumeRoleError marks a failure to get credentials for a tenant's role.
type assumeRoleError struct {
	role    string
	account string
	err     error
}

func (e *assumeRoleError) Error() string {
	if code := errorCode(e.err); code != "" {
		return fmt.Sprintf("assume role %s of account %s: %s: %s", e.role, e.account, code, message(e.err))
	}
	return fmt.Sprintf("assume role %s of account %s: %v", e.role, e.account, e.err)
}

func (e *assumeRoleError) Unwrap() error { return e.err }

var (
	accessDeniedCodes = set("AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
		"AuthFailure", "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
		"InvalidSignatureException", "ExpiredToken", "ExpiredTokenException", "OptInRequired",
		"InvalidAccessKeyId", "AccountProblem", "Blocked")
	invalidCodes = set("ValidationException", "MissingParameter", "IdempotentParameterMismatch",
		"InvalidDocument", "InvalidParameters", "UnsupportedOperation", "InvalidRequest",
		"MalformedXML", "InvalidBucketName", "DuplicateInstanceId", "TooManyTagsException")
	notFoundCodes = set("InvalidInstanceId", "InvalidCommandId", "InvocationDoesNotExist",
		"NoSuchBucket", "NoSuchKey", "NotFound", "InvalidResourceId", "DoesNotExistException")
	notRunningCodes = set("IncorrectInstanceState", "IncorrectState", "UnsupportedPlatformType")
	transientCodes  = set("InternalError", "InternalFailure", "InternalServerError",
		"ServiceUnavailable", "Unavailable", "RequestTimeout", "RequestTimeoutException")
)

func set(codes ...string) map[string]bool {
	m := make(map[string]bool, len(codes))
	for _, c := range codes {
		m[c] = true
	}
	return m
}

// isThrottle reports whether code is one of AWS's throttling codes.
func isThrottle(code string) bool {
	_, ok := retry.DefaultThrottleErrorCodes[code]
	return ok || code == "ThrottlingException"
}

// isNotFound reports whether err carries an AWS not-found code.
func isNotFound(err error) bool { return errors.Is(kindOf(errorCode(err)), provider.ErrNotFound) }

// errorCode returns the AWS error code in err's chain, or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// kindOf maps an AWS error code onto a provider sentinel.
func kindOf(code string) error {
	switch {
	case code == "":
		return nil
	case isThrottle(code):
		return provider.ErrThrottled
	case accessDeniedCodes[code]:
		return provider.ErrAccessDenied
	case notRunningCodes[code]:
		return provider.ErrInstanceNotRunning
	case invalidCodes[code] || strings.HasPrefix(code, "InvalidParameter") || strings.HasSuffix(code, ".Malformed"):
		return provider.ErrInvalidArgument
	case notFoundCodes[code] || strings.HasSuffix(code, ".NotFound") || strings.HasSuffix(code, "NotFound"):
		return provider.ErrNotFound
	}
	return nil
}

// wrapErr turns an SDK error of op into an *Error. Context errors stay themselves (wrapped with
// the operation), so callers see cancellation as such.
func wrapErr(op, account string, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if errors.Is(err, ratelimit.ErrDeadline) {
			return &Error{Op: op, Account: account, Kind: provider.ErrThrottled, Err: err}
		}
		return fmt.Errorf("%s in account %s: %w", op, account, err)
	}
	if errors.Is(err, ratelimit.ErrDeadline) {
		return &Error{Op: op, Account: account, Kind: provider.ErrThrottled, Err: err}
	}
	var ar *assumeRoleError
	if errors.As(err, &ar) {
		code := errorCode(ar.err)
		kind := kindOf(code)
		e := &Error{Op: op, Account: ar.account, Code: code, Kind: kind, Err: ar}
		switch {
		case kind == nil || errors.Is(kind, provider.ErrNotFound) || errors.Is(kind, provider.ErrInvalidArgument):
			// A role that does not exist or cannot be assumed with these parameters.
			e.Kind = provider.ErrAccessDenied
		case errors.Is(kind, provider.ErrThrottled):
		default:
			e.Transient = isTransient(ar.err)
		}
		return e
	}
	code := errorCode(err)
	e := &Error{Op: op, Account: account, Code: code, Kind: kindOf(code), Err: err}
	if e.Kind == nil {
		e.Transient = transientCodes[code] || isTransient(err)
	}
	return e
}

// isTransient reports 5xx responses and transport failures.
func isTransient(err error) bool {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	return retry.RetryableConnectionError{}.IsErrorRetryable(err).Bool()
}
