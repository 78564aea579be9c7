package cloudsim

import (
	"encoding/base64"
	"encoding/xml"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

const stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"

func stsService() *service {
	return &service{
		name:      "sts",
		handlers:  map[string]handler{"AssumeRole": stsAssumeRole, "GetCallerIdentity": stsGetCallerIdentity},
		operation: parseQueryForm,
		write:     writeQueryResult,
		writeErr: func(rw http.ResponseWriter, c *call, e *apiError) {
			typ := "Sender"
			if e.Status >= 500 {
				typ = "Receiver"
			}
			writeXML(rw, e.Status, stsErrorResponse{Xmlns: stsNamespace, Type: typ, Code: e.Code, Message: e.Message, RequestID: c.requestID})
		},
		unknownKey:   apiError{"InvalidClientTokenId", "The security token included in the request is invalid.", 403},
		badSignature: apiError{"SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.", 403},
		expired:      apiError{"ExpiredToken", "The security token included in the request is expired", 400},
		throttle:     apiError{"ThrottlingException", "Rate exceeded", 400},
		internal:     apiError{"InternalFailure", "The request processing has failed because of an unknown error, exception or failure.", 500},
	}
}

type stsErrorResponse struct {
	XMLName   xml.Name `xml:"ErrorResponse"`
	Xmlns     string   `xml:"xmlns,attr"`
	Type      string   `xml:"Error>Type"`
	Code      string   `xml:"Error>Code"`
	Message   string   `xml:"Error>Message"`
	RequestID string   `xml:"RequestId"`
}

type stsMeta struct {
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"ResponseMetadata>RequestId"`
}

func (m *stsMeta) setMeta(id string) { m.Xmlns, m.RequestID = stsNamespace, id }

type assumeRoleResponse struct {
	XMLName         xml.Name `xml:"AssumeRoleResponse"`
	AccessKeyID     string   `xml:"AssumeRoleResult>Credentials>AccessKeyId"`
	SecretAccessKey string   `xml:"AssumeRoleResult>Credentials>SecretAccessKey"`
	SessionToken    string   `xml:"AssumeRoleResult>Credentials>SessionToken"`
	Expiration      string   `xml:"AssumeRoleResult>Credentials>Expiration"`
	AssumedRoleID   string   `xml:"AssumeRoleResult>AssumedRoleUser>AssumedRoleId"`
	ARN             string   `xml:"AssumeRoleResult>AssumedRoleUser>Arn"`
	PackedPolicy    int      `xml:"AssumeRoleResult>PackedPolicySize"`
	stsMeta
}

type getCallerIdentityResponse struct {
	XMLName xml.Name `xml:"GetCallerIdentityResponse"`
	UserID  string   `xml:"GetCallerIdentityResult>UserId"`
	Account string   `xml:"GetCallerIdentityResult>Account"`
	ARN     string   `xml:"GetCallerIdentityResult>Arn"`
	stsMeta
}

var (
	roleARNPattern     = regexp.MustCompile(`^arn:aws:iam::([0-9]{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$`)
	sessionNamePattern = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
)

func stsAssumeRole(c *call) (any, error) {
	roleARN := c.form.Get("RoleArn")
	name := c.form.Get("RoleSessionName")
	switch {
	case roleARN == "":
		return nil, errf("ValidationError", "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
	case len(roleARN) < 20 || len(roleARN) > 2048:
		return nil, errf("ValidationError", "1 validation error detected: Value '%s' at 'roleArn' failed to satisfy constraint: Member must have length between 20 and 2048", roleARN)
	case !sessionNamePattern.MatchString(name):
		return nil, errf("ValidationError", "1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must have length between 2 and 64 and match [\\w+=,.@-]*", name)
	}
	duration := 3600
	if v := c.form.Get("DurationSeconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 900 || n > 43200 {
			return nil, errf("ValidationError", "1 validation error detected: Value '%s' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200", v)
		}
		duration = n
	}
	externalID := c.form.Get("ExternalId")
	denied := errf("AccessDenied", "User: %s is not authorized to perform: sts:AssumeRole on resource: %s", c.id.ARN(), roleARN)
	resp := &assumeRoleResponse{}
	err := c.s.update(func(w *world, now time.Time) error {
		m := roleARNPattern.FindStringSubmatch(roleARN)
		if m == nil {
			return errf("ValidationError", "%s is invalid: RoleArn must be arn:aws:iam::<account>:role/<name>", roleARN)
		}
		a := w.accounts[m[1]]
		if a == nil || a.Provider || a.RoleName != m[2] {
			return denied
		}
		trusted := a.TrustedPrincipal == c.id.ARN() || a.TrustedPrincipal == "arn:aws:iam::"+c.id.Account+":root"
		if !trusted || externalID != a.ExternalID {
			return denied
		}
		w.meta.Seq++
		w.markMeta()
		n := strconv.FormatUint(w.meta.Seq, 10)
		sess := &session{
			AccessKeyID: "ASIA" + hashAlnum(w.seed, 16, "session-key", n),
			Secret:      hashHex(w.seed, 40, "session-secret", n),
			Token:       base64.StdEncoding.EncodeToString([]byte("cloudsim-session:" + hashHex(w.seed, 64, "session-token", n))),
			Account:     a.ID, RoleName: a.RoleName, SessionName: name,
			RoleID:     "AROA" + hashAlnum(w.seed, 17, "role-id", a.ID, a.RoleName),
			Expiration: now.Add(time.Duration(duration) * time.Second),
		}
		w.sessions[sess.AccessKeyID] = sess
		w.markSession(sess)
		w.pruneSessions(now)
		resp.AccessKeyID, resp.SecretAccessKey, resp.SessionToken = sess.AccessKeyID, sess.Secret, sess.Token
		resp.Expiration = sess.Expiration.UTC().Format(time.RFC3339)
		resp.AssumedRoleID = sess.RoleID + ":" + name
		resp.ARN = "arn:aws:sts::" + a.ID + ":assumed-role/" + a.RoleName + "/" + name
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// pruneSessions drops sessions expired more than a day ago, a few per call, so the session
// table does not grow with every AssumeRole of a long run.
func (w *world) pruneSessions(now time.Time) {
	n := 0
	for id, s := range w.sessions {
		if n++; n > 8 {
			return
		}
		if now.Sub(s.Expiration) > 24*time.Hour {
			delete(w.sessions, id)
			w.markDeleted("session", id)
		}
	}
}

func stsGetCallerIdentity(c *call) (any, error) {
	return &getCallerIdentityResponse{UserID: c.id.UserID(), Account: c.id.Account, ARN: c.id.ARN()}, nil
}
