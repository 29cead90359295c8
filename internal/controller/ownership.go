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
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"

	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// statusOwnership declares which status fields a reconciler writes. Every
// status field has one writer (docs/status-ownership.md is the table): the
// reconciler, the event intake, or the events endpoint. Where a reconciler
// must touch a field the intake owns, the declaration says exactly when.
type statusOwnership struct {
	// owned are the fields only this reconciler writes.
	owned []string
	// onNewAttempt are intake fields the reconciler resets or fills in the
	// patch that starts an attempt, that is a patch that also writes the
	// attempt's key (startKeys): the job it created or adopted belongs to
	// no event yet, so only the reconciler can say what it is.
	onNewAttempt []string
	// startKeys are the fields whose change marks a patch as starting an
	// attempt (a submission marker, a job or batch ID).
	startKeys []string
	// fillOnce are intake fields the reconciler may set only while they are
	// empty: facts the intake did not deliver and a read of the job did.
	fillOnce []string
	// others are the fields another component writes, by writer ("intake",
	// "events endpoint"); with owned they cover every status field.
	others map[string]string
}

var (
	fineTuneOwnership = statusOwnership{
		owned: []string{"attempt", "attempts", "submission", "trainingFileID", "validationFileID", "cleanupAttempts", "deletionPolicy",
			"deployedModel", "deployedAttempt", "deployment", "endpoint", "observedGeneration", "conditions"},
		onNewAttempt: []string{"jobID", "phase", "remoteStatus", "step", "loss", "finalStep", "evalLoss", "secondsRemaining", "outputModel", "checkpoints", "error"},
		startKeys:    []string{"jobID", "submission"},
		fillOnce:     []string{"outputModel", "evalLoss"},
		others: byIntake("jobID", "phase", "remoteStatus", "step", "loss", "finalStep", "evalLoss", "secondsRemaining", "outputModel", "checkpoints", "error",
			"processedEvents", "lastEvent"),
	}
	batchOwnership = statusOwnership{
		owned:        []string{"output", "usage", "tokensAccounted", "accountedTokens", "fetchAttempts", "submission", "cleanupAttempts", "deletionPolicy", "observedGeneration", "conditions"},
		onNewAttempt: []string{"batchID", "phase", "progress", "totalTokens", "outputFileID", "errorFileID", "error", "parts"},
		startKeys:    []string{"batchID", "submission"},
		fillOnce:     []string{"outputFileID", "errorFileID", "parts[].outputFileID", "parts[].errorFileID"},
		others: byIntake("batchID", "phase", "progress", "totalTokens", "outputFileID", "errorFileID", "outputURL", "error", "parts",
			"processedEvents", "lastEvent"),
	}
	migrationOwnership = statusOwnership{
		owned:  []string{"phase", "scheduledTime", "targets", "migrated", "atRisk", "lastScanTime", "observedGeneration", "conditions"},
		others: byIntake("processedEvents", "lastEvent"),
	}
	subscriptionOwnership = statusOwnership{
		owned:  []string{"webhookPath", "remoteID", "registrationHash", "cleanupAttempts", "observedGeneration", "conditions"},
		others: map[string]string{"lastEventTime": "events endpoint"},
	}
)

func byIntake(fields ...string) map[string]string {
	m := map[string]string{}
	for _, f := range fields {
		m[f] = "intake"
	}
	return m
}

// check returns the patcher hook that refuses a status patch touching a
// field this reconciler does not own, naming the field. Tests install it on
// every reconciler they drive, so that a new write to someone else's field
// fails the suite.
func (o statusOwnership) check(statusOf func(client.Object) any) func(before, after client.Object, patch map[string]any) error {
	return func(before, after client.Object, patch map[string]any) error {
		st, _ := patch["status"].(map[string]any)
		var touched []string
		for f := range st {
			touched = append(touched, f)
		}
		sort.Strings(touched)
		b, a := fieldsOf(statusOf(before)), fieldsOf(statusOf(after))
		// A patch starts an attempt when it writes the attempt's key, or
		// while a submission marker is in flight (the submission records
		// the batches it creates or finds part by part).
		starting := b["submission"] != nil
		for _, k := range o.startKeys {
			if _, ok := st[k]; ok {
				starting = true
			}
		}

		for _, f := range touched {
			switch {
			case slices.Contains(o.owned, f):
			case starting && slices.Contains(o.onNewAttempt, f):
			case slices.Contains(o.fillOnce, f) && isZero(b[f]):
			case f == "parts" && slices.Contains(o.fillOnce, "parts[].outputFileID") && partsOnlyFilled(b[f], a[f]):
			default:
				return fmt.Errorf("status.%s is not this reconciler's to write (see docs/status-ownership.md); patch touched %v", f, touched)
			}
		}
		return nil
	}
}

func fieldsOf(status any) map[string]any {
	data, _ := json.Marshal(status)
	m := map[string]any{}
	_ = json.Unmarshal(data, &m)
	return m
}

func isZero(v any) bool { return v == nil || reflect.ValueOf(v).IsZero() }

// partsOnlyFilled reports whether the parts changed only by output and error
// file IDs that were empty before.
func partsOnlyFilled(before, after any) bool {
	b, _ := before.([]any)
	a, _ := after.([]any)
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		bp, _ := b[i].(map[string]any)
		ap, _ := a[i].(map[string]any)
		for k, av := range ap {
			if bv, ok := bp[k]; ok && reflect.DeepEqual(av, bv) {
				continue
			}
			if (k != "outputFileID" && k != "errorFileID") || !isZero(bp[k]) {
				return false
			}
		}
		for k := range bp {
			if _, ok := ap[k]; !ok {
				return false
			}
		}
	}
	return true
}

func ftStatusOf(o client.Object) any        { return o.(*togetherv1.TogetherFineTune).Status }
func batchStatusOf(o client.Object) any     { return o.(*togetherv1.TogetherBatch).Status }
func migrationStatusOf(o client.Object) any { return o.(*togetherv1.TogetherModelMigration).Status }
func subscriptionStatusOf(o client.Object) any {
	return o.(*togetherv1.TogetherWebhookSubscription).Status
}
