package cloudsim

import (
	"encoding/xml"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"
)

const snsNamespace = "http://sns.amazonaws.com/doc/2010-03-31/"

// snsService emulates SNS's Publish (Query protocol), enough for a notifier to have a real
// receiver: every topic of the form arn:aws:sns:<region>:<account>:<name> exists, and each
// message published is kept in memory (SNSMessages), not persisted.
func snsService() *service {
	return &service{
		name:      "sns",
		handlers:  map[string]handler{"Publish": snsPublish},
		operation: parseQueryForm,
		write:     writeQueryResult,
		writeErr: func(rw http.ResponseWriter, c *call, e *apiError) {
			typ := "Sender"
			if e.Status >= 500 {
				typ = "Receiver"
			}
			writeXML(rw, e.Status, stsErrorResponse{Xmlns: snsNamespace, Type: typ, Code: e.Code, Message: e.Message, RequestID: c.requestID})
		},
		unknownKey:   apiError{"InvalidClientTokenId", "The security token included in the request is invalid.", 403},
		badSignature: apiError{"SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.", 403},
		expired:      apiError{"ExpiredToken", "The security token included in the request is expired", 403},
		throttle:     apiError{"Throttling", "Rate exceeded", 400},
		internal:     apiError{"InternalError", "The request processing has failed because of an unknown error, exception or failure.", 500},
	}
}

// SNSMessage is one message published to an emulated SNS topic.
type SNSMessage struct {
	MessageID string
	TopicARN  string
	Subject   string
	Message   string
	// Attributes are the string message attributes, by name.
	Attributes map[string]string
	// Account is the account that signed the publish.
	Account string
	Time    time.Time
}

// snsInbox keeps the published messages.
type snsInbox struct {
	mu   sync.Mutex
	msgs []SNSMessage
}

// SNSMessages returns every message published to the emulated SNS so far, oldest first.
func (s *Server) SNSMessages() []SNSMessage {
	s.sns.mu.Lock()
	defer s.sns.mu.Unlock()
	return slices.Clone(s.sns.msgs)
}

type publishResponse struct {
	XMLName   xml.Name `xml:"PublishResponse"`
	MessageID string   `xml:"PublishResult>MessageId"`
	stsMeta
}

func (r *publishResponse) setMeta(id string) { r.Xmlns, r.RequestID = snsNamespace, id }

var topicARNPattern = regexp.MustCompile(`^arn:aws:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$`)

func snsPublish(c *call) (any, error) {
	topic := c.form.Get("TopicArn")
	if topic == "" {
		topic = c.form.Get("TargetArn")
	}
	msg := c.form.Get("Message")
	switch {
	case topic == "":
		return nil, errf("InvalidParameter", "Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter")
	case !topicARNPattern.MatchString(topic):
		return nil, errf("InvalidParameter", "Invalid parameter: TopicArn Reason: %q is not an SNS topic ARN", topic)
	case msg == "":
		return nil, errf("InvalidParameter", "Invalid parameter: Message Reason: Empty message")
	case len(msg) > 256*1024:
		return nil, errf("InvalidParameter", "Invalid parameter: Message too long")
	case len(c.form.Get("Subject")) > 100:
		return nil, errf("InvalidParameter", "Invalid parameter: Subject Reason: longer than 100 characters")
	}
	attrs := map[string]string{}
	for i := 1; ; i++ {
		p := "MessageAttributes.entry." + strconv.Itoa(i) + "."
		name := c.form.Get(p + "Name")
		if name == "" {
			break
		}
		attrs[name] = c.form.Get(p + "Value.StringValue")
	}
	n := c.s.reqSeq.Add(1)
	id := hashHex(0, 32, "sns-message", c.requestID, strconv.FormatUint(n, 10))
	id = id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:32]
	c.s.sns.mu.Lock()
	c.s.sns.msgs = append(c.s.sns.msgs, SNSMessage{
		MessageID: id, TopicARN: topic, Subject: c.form.Get("Subject"), Message: msg, Attributes: attrs,
		Account: c.id.Account, Time: c.s.cfg.Clock(),
	})
	c.s.sns.mu.Unlock()
	return &publishResponse{MessageID: id}, nil
}
