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

package v1alpha1

import "regexp"

// ModelIDPattern is the shape of a Together model ID: an organisation and a
// model name separated by one slash (meta-llama/Llama-3.3-70B-Instruct-Turbo).
// Migrations accept nothing else, so that a URL, a command or any other
// value a workload holds can never be named as the model to replace.
const ModelIDPattern = `^[A-Za-z0-9][A-Za-z0-9._@+-]*/[A-Za-z0-9][A-Za-z0-9._:+-]*$`

var modelIDRE = regexp.MustCompile(ModelIDPattern)

// IsModelID reports whether s has the shape of a Together model ID. The
// event intake checks it before creating a migration from a deprecation, so
// that a bad ID is refused as such instead of failing the create.
func IsModelID(s string) bool { return len(s) <= 256 && modelIDRE.MatchString(s) }

// MigrateOptInLabel, set to "true" on a Deployment or StatefulSet, lets a
// migration without spec.selector move it. Without a selector and without
// this label a workload is never touched: there is no implicit "every
// workload of the namespace".
const MigrateOptInLabel = "together.ai/migrate"

// DefaultModelEnvNames are the environment variables a migration rewrites
// when spec.envNames is empty. Any other variable is left alone even when
// its value equals the old model.
var DefaultModelEnvNames = []string{"TOGETHER_MODEL", "MODEL", "MODEL_ID", "MODEL_NAME", "LLM_MODEL"}

// ModelEnvNames returns the environment variables this migration may rewrite.
func (s *TogetherModelMigrationSpec) ModelEnvNames() []string {
	if len(s.EnvNames) > 0 {
		return s.EnvNames
	}
	return DefaultModelEnvNames
}

// ManagedByLabel and ManagedByValue mark the Kubernetes objects the operator
// creates (batch fetch Jobs). The manager's cache holds only Jobs carrying
// them, so that its memory does not grow with every Job of the cluster.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "together-operator"
)

// BatchOutputOptInAnnotation, set to "true" on a PersistentVolumeClaim (as an
// annotation or a label), lets a TogetherBatch's fetch Job mount it. Any
// other claim of the namespace is refused: whoever may create a batch must
// not thereby read or overwrite every volume of the namespace.
const BatchOutputOptInAnnotation = "together.ai/batch-output"

// FetchServiceAccount is the ServiceAccount batch fetch Jobs run as, created
// by the operator in the batch's namespace without a token
// (automountServiceAccountToken: false) and bound to no role.
const FetchServiceAccount = "together-batch-fetch"

// SkipRemoteCleanupAnnotation, set to "true" on a resource, lets its
// deletion finish without cancelling or deleting anything on Together: for a
// resource whose account is gone, or whose remote work someone cleans up by
// hand. The operator records the skip in a Warning Event.
const SkipRemoteCleanupAnnotation = "together.ai/skip-remote-cleanup"

// RemoteCleanupCondition reports, on a resource being deleted, that the
// remote cleanup its finalizer guards was skipped and why.
const RemoteCleanupCondition = "RemoteCleanup"

// Reasons of RemoteCleanupCondition and of the Warning Event that goes with it.
const (
	// ReasonCleanupSkippedOnRequest: SkipRemoteCleanupAnnotation was set.
	ReasonCleanupSkippedOnRequest = "CleanupSkippedOnRequest"
	// ReasonCleanupUnauthorized: Together refused the credentials (401/403),
	// so retrying cannot help and would keep the namespace from deleting.
	ReasonCleanupUnauthorized = "CleanupUnauthorized"
	// ReasonCleanupGaveUp: the cleanup failed MaxCleanupAttempts times.
	ReasonCleanupGaveUp = "CleanupGaveUp"
)

// MaxCleanupAttempts bounds how often a finalizer retries remote cleanup
// before it lets the resource go.
const MaxCleanupAttempts = 5
