//go:build tools

// Package tools pins the upstream Kubernetes commands that the test cluster runs.
// Nothing here is Capstan code: `go build` compiles the listed commands from the
// module proxy at the versions in go.mod (see ../../versions.env).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
