package events

// Stream names.
const (
	StreamTenant  = "PATCH_EVENTS"
	StreamCatalog = "CATALOG_EVENTS"
	StreamDLQ     = "DLQ"
)
