//go:build tools

// Package tools pins the peer controller that tests/bench/peer/compare.py runs beside
// Capstan. Nothing here is Capstan code: `go build` compiles the listed command from the
// module proxy at the version in go.mod (see ../versions.env).
package tools

import (
	_ "github.com/argoproj/argo-rollouts/cmd/rollouts-controller"
)
