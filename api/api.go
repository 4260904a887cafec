// Package api holds tally's public HTTP contract, the OpenAPI document,
// embedded so that the binary serves the document it was built with.
package api

import _ "embed"

// OpenAPI is api/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
