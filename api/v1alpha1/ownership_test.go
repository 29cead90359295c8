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

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

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

func fineTuneIn(ns, uid, suffix string) *TogetherFineTune {
	return &TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, UID: types.UID(uid)},
		Spec: TogetherFineTuneSpec{Training: &TrainingSpec{Suffix: suffix}}}
}

func TestSubmissionTagsNameTheNamespaceTheResourceAndTheAttempt(t *testing.T) {
	a := fineTuneIn("team-a", "uid-1", "")
	tag := a.SubmissionTag(1)
	if len(tag) != 18 || !strings.HasPrefix(tag, "n"+NamespaceTag("team-a")+"-") {
		t.Fatalf("tag %q: want n<8 hex>-<8 hex>", tag)
	}
	for _, other := range []string{a.SubmissionTag(2), fineTuneIn("team-a", "uid-2", "").SubmissionTag(1), fineTuneIn("team-b", "uid-1", "").SubmissionTag(1)} {
		if other == tag {
			t.Errorf("another attempt, resource or namespace got the same tag %q", tag)
		}
	}
	if got := a.JobSuffix(tag); got != tag {
		t.Errorf("no user suffix: %q, want the tag alone", got)
	}
	if got := fineTuneIn("team-a", "uid-1", "support").JobSuffix(tag); got != "support-"+tag {
		t.Errorf("suffix %q", got)
	}
	long := fineTuneIn("team-a", "uid-1", strings.Repeat("a", 30)+"-bbbb").JobSuffix(tag)
	if len(long) > MaxJobSuffixLen || !strings.HasSuffix(long, "-"+tag) || strings.Contains(long, "--") {
		t.Errorf("long suffix %q: want at most %d characters ending in the tag", long, MaxJobSuffixLen)
	}
	b := &TogetherBatch{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", UID: types.UID("uid-1")}}
	file := BatchPartFileName(b.SubmissionTag(1, "0123456789ab"), 3)
	if !TaggedFor(file, "team-a") || TaggedFor(file, "team-b") {
		t.Errorf("batch file %q: want tagged for team-a only", file)
	}
}

func TestNamespaceTagInTakesTheOperatorsTagNotOneAUserWrote(t *testing.T) {
	victim := "n" + NamespaceTag("team-a")
	for _, tc := range []struct {
		name string
		want string // namespace whose tag must be found; "" for none
	}{
		// A job of team-b whose user suffix imitates team-a's tag: the
		// operator's tag comes last.
		{fineTuneIn("team-b", "u", victim+"-deadbeef").JobSuffix(fineTuneIn("team-b", "u", "").SubmissionTag(1)), "team-b"},
		// Together's model_output_name: user/model-suffix-hash.
		{"sim-user/Meta-Llama-3.1-8B-" + fineTuneIn("team-a", "u", "").SubmissionTag(1) + "-a1b2c3", "team-a"},
		// An 8-hex-digit tag of an earlier version names no namespace.
		{"support-0badc0de", ""},
		{"tbatch-6f1c2a9e-1b2c-4d5e-8f90-123456789abc-a1-0123456789ab-part-0.jsonl", ""},
		{"", ""},
		{"n12345678x", ""},
	} {
		got, ok := NamespaceTagIn(tc.name)
		if tc.want == "" {
			if ok {
				t.Errorf("%q: found tag %q, want none", tc.name, got)
			}
			continue
		}
		if !ok || got != NamespaceTag(tc.want) {
			t.Errorf("%q: tag %q (%v), want %s's %q", tc.name, got, ok, tc.want, NamespaceTag(tc.want))
		}
	}
}

// FuzzJobSuffixKeepsTheTag: whatever suffix a user writes, the job's suffix
// stays within the limit, carries the submission's tag (so an interrupted
// submission finds it) and names the resource's namespace, not another.
func FuzzJobSuffixKeepsTheTag(f *testing.F) {
	f.Add("support", "team-a")
	f.Add("n"+NamespaceTag("other")+"-12345678", "team-a")
	f.Add(strings.Repeat("-", 50), "x")
	f.Fuzz(func(t *testing.T, user, ns string) {
		ft := fineTuneIn(ns, "uid", user)
		tag := ft.SubmissionTag(1)
		suffix := ft.JobSuffix(tag)
		if len(suffix) > MaxJobSuffixLen {
			t.Fatalf("suffix %q is %d characters", suffix, len(suffix))
		}
		if !FineTuneCarriesTag(suffix, "", tag) || !FineTuneCarriesTag("", "user/model-"+suffix+"-abc123", tag) {
			t.Fatalf("suffix %q does not carry tag %q", suffix, tag)
		}
		if !TaggedFor(suffix, ns) || !TaggedFor("user/model-"+suffix+"-abc123", ns) {
			t.Fatalf("suffix %q is not tagged for namespace %q", suffix, ns)
		}
	})
}
