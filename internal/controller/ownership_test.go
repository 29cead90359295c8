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

package controller

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// statusFields lists the JSON names of a status struct's fields.
func statusFields(status any) []string {
	var out []string
	t := reflect.TypeOf(status)
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

var ownershipByKind = []struct {
	kind   string
	status any
	o      statusOwnership
}{
	{"TogetherFineTune", togetherv1.TogetherFineTuneStatus{}, fineTuneOwnership},
	{"TogetherBatch", togetherv1.TogetherBatchStatus{}, batchOwnership},
	{"TogetherModelMigration", togetherv1.TogetherModelMigrationStatus{}, migrationOwnership},
	{"TogetherWebhookSubscription", togetherv1.TogetherWebhookSubscriptionStatus{}, subscriptionOwnership},
}

// TestEveryStatusFieldHasOneDeclaredWriter fails when a status field is
// added without saying who writes it, or when a field is declared both the
// reconciler's and another component's.
func TestEveryStatusFieldHasOneDeclaredWriter(t *testing.T) {
	for _, k := range ownershipByKind {
		for _, f := range statusFields(k.status) {
			mine := slices.Contains(k.o.owned, f)
			other, theirs := k.o.others[f]
			switch {
			case mine && theirs:
				t.Errorf("%s status.%s is declared both the reconciler's and the %s's", k.kind, f, other)
			case !mine && !theirs:
				t.Errorf("%s status.%s has no declared writer: add it to internal/controller/ownership.go and docs/status-ownership.md", k.kind, f)
			}
		}
		for _, f := range append(slices.Clone(k.o.onNewAttempt), k.o.startKeys...) {
			if !slices.Contains(k.o.owned, f) && k.o.others[f] == "" {
				t.Errorf("%s: %s is allowed at an attempt's start but written by nobody", k.kind, f)
			}
		}
	}
}

// TestOwnershipTableInDocsNamesEveryField keeps docs/status-ownership.md in
// step with the declaration: each kind's section lists each of its fields
// in a row whose writer column names the declared writer.
func TestOwnershipTableInDocsNamesEveryField(t *testing.T) {
	data, err := os.ReadFile("../../docs/status-ownership.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	for _, sec := range strings.Split(string(data), "\n## ")[1:] {
		title, body, _ := strings.Cut(sec, "\n")
		sections[strings.TrimSpace(title)] = body
	}
	row := regexp.MustCompile("(?m)^\\| (.*) \\| (.*) \\|$")
	for _, k := range ownershipByKind {
		body, ok := sections[k.kind]
		if !ok {
			t.Fatalf("docs/status-ownership.md has no section %q", k.kind)
		}
		writers := map[string]string{}
		for _, m := range row.FindAllStringSubmatch(body, -1) {
			for _, f := range regexp.MustCompile("`([a-zA-Z]+)`").FindAllStringSubmatch(m[1], -1) {
				writers[f[1]] = m[2]
			}
		}
		for _, f := range statusFields(k.status) {
			w, ok := writers[f]
			if !ok {
				t.Errorf("docs/status-ownership.md, %s: no row for status.%s", k.kind, f)
				continue
			}
			want := "reconciler"
			if o := k.o.others[f]; o != "" {
				want = o
			}
			if !strings.HasPrefix(w, want) {
				t.Errorf("docs/status-ownership.md, %s: status.%s is written by %q, but the declaration says %s", k.kind, f, w, want)
			}
		}
	}
}
