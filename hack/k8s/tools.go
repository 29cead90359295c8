//go:build tools

// Package tools pins the commands this module builds. Both kubernetes commands
// must be imported here before `go mod tidy`, or kubectl's dependencies are
// missing from go.sum.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
