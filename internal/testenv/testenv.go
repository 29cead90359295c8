/*
Copyright 2026 The together-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package testenv sets up the real API server (envtest) that the suites run
// against, so that each suite starts it the same way: the CRDs generated
// into config/crd/bases, the binaries `make envtest` builds (found through
// KUBEBUILDER_ASSETS), and a scheme that knows this project's types.
package testenv

import (
	"path/filepath"
	"runtime"

	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// RepoRoot is the repository's top directory, found from this file's place
// so that suites in any package resolve the same paths.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Environment returns an envtest environment that installs this project's CRDs.
func Environment() *envtest.Environment {
	return &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
}

// Scheme returns a scheme with the built-in kinds and this project's kinds.
func Scheme() *kruntime.Scheme {
	s := kruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(togetherv1.AddToScheme(s))
	return s
}
