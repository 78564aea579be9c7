package patchwaveproto

// Every generated Go package, imported for its registration in protoregistry.GlobalFiles: code
// that checks every rpc (libs/auth's rule test, the gateway and each host at start) imports this
// package and so sees all of them. registry_test.go fails for a .proto file whose package is
// not imported here.
import (
	// Each package registers its files in protoregistry.GlobalFiles when imported.
	_ "github.com/patchwave/patchwave/proto/gen/go/patchwave/auth/v1"
	_ "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	_ "github.com/patchwave/patchwave/proto/gen/go/patchwave/credentials/v1"
	_ "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	_ "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	_ "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
	_ "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	_ "github.com/patchwave/patchwave/proto/gen/go/patchwave/scheduler/v1"
	_ "github.com/patchwave/patchwave/proto/gen/go/patchwave/snapshotter/v1"
	_ "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)
