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

import "testing"

func TestEffectiveDeletionPolicyRetainsAdoptedWorkUnlessSet(t *testing.T) {
	for _, tc := range []struct {
		name    string
		adopted bool
		set     DeletionPolicy
		want    DeletionPolicy
	}{
		{"submitted, unset", false, "", DeletionPolicyCancel},
		{"submitted, Retain", false, DeletionPolicyRetain, DeletionPolicyRetain},
		{"adopted, unset", true, "", DeletionPolicyRetain},
		{"adopted, Retain", true, DeletionPolicyRetain, DeletionPolicyRetain},
		// Only reachable for a fine-tune with its own endpoint (CEL).
		{"adopted, Cancel", true, DeletionPolicyCancel, DeletionPolicyCancel},
	} {
		ft := &TogetherFineTune{Spec: TogetherFineTuneSpec{DeletionPolicy: tc.set}}
		b := &TogetherBatch{Spec: TogetherBatchSpec{DeletionPolicy: tc.set}}
		if tc.adopted {
			ft.Spec.JobID, b.Spec.BatchID = "ft-1", "batch-1"
		} else {
			ft.Spec.Training, b.Spec.Input = &TrainingSpec{}, &BatchInput{}
		}
		if got := ft.EffectiveDeletionPolicy(); got != tc.want {
			t.Errorf("%s: fine-tune policy %q, want %q", tc.name, got, tc.want)
		}
		if got := b.EffectiveDeletionPolicy(); got != tc.want {
			t.Errorf("%s: batch policy %q, want %q", tc.name, got, tc.want)
		}
	}
}
