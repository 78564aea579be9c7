module github.com/patchwave/patchwave/services/snapshotter

go 1.26

require (
	github.com/patchwave/patchwave/libs v0.0.0
	github.com/patchwave/patchwave/proto v0.0.0
)

replace (
	github.com/patchwave/patchwave/libs => ../../libs
	github.com/patchwave/patchwave/proto => ../../proto
)
