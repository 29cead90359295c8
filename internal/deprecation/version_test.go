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

package deprecation

import (
	"math/rand/v2"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// randomVersion draws from small sets on purpose, so that ties in the
// event time and in the sunset date are common and the tie-breaks run.
func randomVersion(r *rand.Rand) version {
	zones := []*time.Location{time.UTC, time.FixedZone("east", 9*3600), time.FixedZone("west", -7*3600)}
	at := time.Unix(1_800_000_000+int64(r.IntN(4)), int64(r.IntN(3))*333_333_333).In(zones[r.IntN(len(zones))])
	return version{
		at:          at,
		sunset:      []string{"", "2026-12-01", "2027-01-15", "2027-02-01"}[r.IntN(4)],
		replacement: []string{"", "org/a", "org/b"}[r.IntN(3)],
	}
}

// The merge keeps the maximum of the deprecations it has seen, so it is
// monotone only if compare is a total order: antisymmetric and transitive,
// whatever time zone an event's time was written in.
func TestVersionOrderIsTotal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		a, b, c := randomVersion(r), randomVersion(r), randomVersion(r)
		if a.compare(a) != 0 {
			t.Fatalf("%+v is not equal to itself", a)
		}
		if a.compare(b) != -b.compare(a) {
			t.Fatalf("not antisymmetric: %+v vs %+v", a, b)
		}
		if a.compare(b) <= 0 && b.compare(c) <= 0 && a.compare(c) > 0 {
			t.Fatalf("not transitive: %+v <= %+v <= %+v but not %+v <= %+v", a, b, c, a, c)
		}
	}
}

// Whatever order a set of deprecations arrives in, keeping the newest as
// the merge does ends on the same one; and what a migration records of it
// (its spec and the event-time annotation) reads back as the same version.
func TestMergeIsOrderIndependentAndSurvivesTheObject(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		vs := make([]version, 1+r.IntN(6))
		for i := range vs {
			vs[i] = randomVersion(r)
		}
		merge := func(order []version) version {
			kept := order[0]
			for _, v := range order[1:] {
				// Recorded on the object and read back, as a later
				// delivery finds it.
				m := &togetherv1.TogetherModelMigration{ObjectMeta: metav1.ObjectMeta{},
					Spec: togetherv1.TogetherModelMigrationSpec{SunsetDate: kept.sunset, ReplacementModel: kept.replacement}}
				kept.stamp(m)
				if stored := versionOf(m); stored.compare(kept) != 0 {
					t.Fatalf("%+v reads back from the object as %+v", kept, stored)
				}
				if v.compare(versionOf(m)) > 0 {
					kept = v
				}
			}
			return kept
		}
		want := merge(vs)
		for range 5 {
			shuffled := append([]version(nil), vs...)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if got := merge(shuffled); got.compare(want) != 0 {
				t.Fatalf("arrival order changed the result: %+v, want %+v (from %+v)", got, want, vs)
			}
		}
	}
}
