//go:build !race

package bus_test

// raceBuild is true when the tests run with the race detector (make test does), which
// allocates in code it instruments: the allocation bounds have a race build's figures too.
const raceBuild = false
