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

// What the operator owns on Together, and what deleting a resource does to
// it. A resource either submitted its remote work (spec.training,
// spec.input) or adopted work that already existed (spec.jobID,
// spec.batchID); only the first is ever cancelled.

// Adopted reports whether the resource follows a job it did not submit.
func (ft *TogetherFineTune) Adopted() bool { return ft.Spec.JobID != "" }

// Adopted reports whether the resource follows a batch it did not submit.
func (b *TogetherBatch) Adopted() bool { return b.Spec.BatchID != "" }

// EffectiveDeletionPolicy is what deleting the resource does:
// spec.deletionPolicy when set, otherwise Cancel for a job this resource
// submits and Retain for an adopted one. The CRD has no default, so that
// the default can depend on how the work came to be.
func (ft *TogetherFineTune) EffectiveDeletionPolicy() DeletionPolicy {
	return effectiveDeletionPolicy(ft.Spec.DeletionPolicy, ft.Adopted())
}

// EffectiveDeletionPolicy is what deleting the resource does:
// spec.deletionPolicy when set, otherwise Cancel for batches this resource
// submits and Retain for an adopted one.
func (b *TogetherBatch) EffectiveDeletionPolicy() DeletionPolicy {
	return effectiveDeletionPolicy(b.Spec.DeletionPolicy, b.Adopted())
}

func effectiveDeletionPolicy(set DeletionPolicy, adopted bool) DeletionPolicy {
	switch {
	case set != "":
		return set
	case adopted:
		return DeletionPolicyRetain
	default:
		return DeletionPolicyCancel
	}
}
