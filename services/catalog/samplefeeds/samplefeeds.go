// Package samplefeeds holds the project's sample vendor feeds: a few documents written for
// Patchwave in the shape of the real ones (an Amazon Linux 2023 updateinfo.xml, an Ubuntu OSV
// notice, an MSRC CVRF 1.2 monthly document, a Red Hat CSAF 2.0 advisory). The demo imports
// them; tests use them as documents nobody else wrote. The ids and CVEs are made up.
package samplefeeds

import "embed"

// Files holds the documents, one directory per vendor.
//
//go:embed amazon-linux-2023 ubuntu microsoft redhat
var Files embed.FS
