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
	"math/rand/v2"
	"slices"
	"testing"
)

func parts(phases ...BatchPhase) TogetherBatchStatus {
	st := TogetherBatchStatus{}
	for i, p := range phases {
		st.Parts = append(st.Parts, BatchPart{Index: int32(i), BatchID: string(rune('a' + i)), Phase: p, Progress: 100, TotalTokens: 10})
	}
	return st
}

func TestAggregatePartsTakesTheWorstEndingWhateverTheOrder(t *testing.T) {
	for _, tc := range []struct {
		phases []BatchPhase
		want   BatchPhase
	}{
		{[]BatchPhase{BatchExpired, BatchFailed}, BatchFailed},
		{[]BatchPhase{BatchCancelled, BatchFailed, BatchSucceeded}, BatchFailed},
		{[]BatchPhase{BatchSucceeded, BatchCancelled, BatchExpired}, BatchExpired},
		{[]BatchPhase{BatchSucceeded, BatchCancelled}, BatchCancelled},
		{[]BatchPhase{BatchSucceeded, BatchSucceeded}, BatchSucceeded},
		{[]BatchPhase{BatchSucceeded, BatchInProgress}, BatchInProgress},
		{[]BatchPhase{BatchFailed, BatchValidating}, BatchInProgress},
		{[]BatchPhase{BatchPending, BatchValidating}, BatchValidating},
	} {
		for range 5 {
			ph := slices.Clone(tc.phases)
			rand.Shuffle(len(ph), func(i, j int) { ph[i], ph[j] = ph[j], ph[i] })
			st := parts(ph...)
			st.AggregateParts()
			if st.Phase != tc.want {
				t.Fatalf("parts %v: phase %s, want %s", ph, st.Phase, tc.want)
			}
			if st.TotalTokens != int64(10*len(ph)) || st.Progress != 100 {
				t.Fatalf("parts %v: tokens %d progress %d", ph, st.TotalTokens, st.Progress)
			}
			again := st
			again.AggregateParts()
			if again.Phase != st.Phase {
				t.Fatalf("aggregating twice changed %s to %s", st.Phase, again.Phase)
			}
		}
	}
}

func TestBatchIDs(t *testing.T) {
	b := &TogetherBatch{}
	b.Status.BatchID = "a"
	b.Status.Parts = []BatchPart{{BatchID: "a", Phase: BatchSucceeded}, {BatchID: "b", Phase: BatchInProgress}, {BatchID: ""}}
	if got := b.BatchIDs(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("BatchIDs = %v", got)
	}
	if got := b.RunningBatchIDs(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("RunningBatchIDs = %v", got)
	}
	single := &TogetherBatch{}
	single.Spec.BatchID, single.Status.BatchID, single.Status.Phase = "x", "x", BatchExpired
	if got := single.BatchIDs(); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("BatchIDs = %v", got)
	}
	if got := single.RunningBatchIDs(); len(got) != 0 {
		t.Fatalf("an ended batch runs nothing: %v", got)
	}
}
