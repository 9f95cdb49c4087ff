//go:build tools

// Package tools pins an upstream command that the test cluster runs; see ../../versions.env.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
