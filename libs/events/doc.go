// Package events is Patchwave's event contract: the CloudEvents 1.0 envelope every event travels
// in, the NATS subjects events are published on, the JetStream streams that store them, and the
// registry that ties each protobuf payload to its subject.
//
// On the wire an event is a CloudEvents 1.0 structured-mode JSON document. Its `type` is the full
// name of the protobuf payload (for example "patchwave.events.v1.InstallFailed"), its `data` is the
// payload in protobuf JSON, and its `id` is deterministic: the subject and the business key of the
// event ("patch.acme.install.failed/run-1/i-0abc"). The same id is sent as the Nats-Msg-Id header,
// so JetStream stores an event published twice (a retry, a redelivered handler) only once.
//
// The bytes of a document are those encoding/json writes for the envelope with the compacted
// protobuf JSON as its data (attributes in declaration order, <, >, &, U+2028 and U+2029
// escaped as \u sequences, in the data too). Marshal and Unmarshal take faster paths that write
// and read exactly that (fastwire.go, fastencode.go, fastdata.go) and leave anything unusual to
// encoding/json and protojson; the tests and the fuzz targets FuzzWireEncode, FuzzWireDecode and
// FuzzDecodeData (scripts/fuzz.sh) hold them to it.
//
// Subjects:
//
//	patch.<tenant>.<aggregate>.<event>  tenant events, stream PATCH_EVENTS
//	catalog.<aggregate>.<event>         global catalog events, stream CATALOG_EVENTS
//	dlq.<service>.<handler>             dead letters, stream DLQ
package events
