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

// Values derived from a resource's spec and status. They are methods here,
// not helpers in the packages that need them, so that the event intake, the
// poller and the reconcilers cannot derive them by different rules.

// BatchIDs lists every Together batch the resource names, without
// duplicates: spec.batchID, status.batchID and each part's batch, in that
// order (so a split batch lists its parts in input order).
func (b *TogetherBatch) BatchIDs() []string {
	ids := []string{b.Spec.BatchID, b.Status.BatchID}
	for _, p := range b.Status.Parts {
		ids = append(ids, p.BatchID)
	}
	return compactIDs(ids)
}

// RunningBatchIDs lists the batches of the resource that have not ended: the
// parts not in a terminal phase, or the one batch while its phase is not.
func (b *TogetherBatch) RunningBatchIDs() []string {
	var ids []string
	if len(b.Status.Parts) > 0 {
		for _, p := range b.Status.Parts {
			if p.BatchID != "" && !p.Phase.IsTerminal() {
				ids = append(ids, p.BatchID)
			}
		}
		return ids
	}
	if b.Status.BatchID != "" && !b.Status.Phase.IsTerminal() {
		ids = append(ids, b.Status.BatchID)
	}
	return ids
}

// JobIDs lists every Together fine-tune job the resource names, without
// duplicates: spec.jobID, status.jobID and each attempt's job.
func (ft *TogetherFineTune) JobIDs() []string {
	ids := []string{ft.Spec.JobID, ft.Status.JobID}
	for _, a := range ft.Status.Attempts {
		ids = append(ids, a.JobID)
	}
	return compactIDs(ids)
}

// AggregateParts sets a split batch's phase, progress and tokens from its
// parts. The rule depends on the parts only, never on their order or on
// who computes it: running while any part runs (Validating until one has
// started), Succeeded when every part succeeded, otherwise the worst ending
// of any part (Failed, then Expired, then Cancelled). Because part phases
// only rise, the aggregate only rises too. It does nothing without parts.
func (st *TogetherBatchStatus) AggregateParts() {
	if len(st.Parts) == 0 {
		return
	}
	var progress, tokens int64
	running, started := false, false
	ended := map[BatchPhase]bool{}
	for _, p := range st.Parts {
		progress += int64(p.Progress)
		tokens += p.TotalTokens
		ended[p.Phase] = true
		if !p.Phase.IsTerminal() {
			running = true
		}
		if p.Phase != BatchValidating && p.Phase != BatchPending && p.Phase != "" {
			started = true
		}
	}
	st.Progress = int32(progress / int64(len(st.Parts)))
	st.TotalTokens = tokens
	if st.BatchID == "" {
		st.BatchID = st.Parts[0].BatchID
	}
	switch {
	case running && !started:
		st.Phase = BatchValidating
	case running:
		st.Phase = BatchInProgress
	case ended[BatchFailed]:
		st.Phase = BatchFailed
	case ended[BatchExpired]:
		st.Phase = BatchExpired
	case ended[BatchCancelled]:
		st.Phase = BatchCancelled
	default:
		st.Phase = BatchSucceeded
	}
}

func compactIDs(ids []string) []string {
	out := ids[:0]
	seen := map[string]bool{}
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// APIKeySecret is the Secret the fine-tune names for its Together API key,
// or nil for its namespace's default (spec.apiKeySecretRef).
func (ft *TogetherFineTune) APIKeySecret() *APIKeySecretRef { return ft.Spec.APIKeySecretRef }

// APIKeySecret is the Secret the batch names for its Together API key, or
// nil for its namespace's default (spec.apiKeySecretRef).
func (b *TogetherBatch) APIKeySecret() *APIKeySecretRef { return b.Spec.APIKeySecretRef }

// APIKeySecret is the Secret the subscription names for its Together API
// key, or nil for its namespace's default (spec.apiKeySecretRef).
func (s *TogetherWebhookSubscription) APIKeySecret() *APIKeySecretRef { return s.Spec.APIKeySecretRef }

// APIKeySecret is the Secret the migration names for the Together API key
// of its catalogue check, or nil for its namespace's default
// (spec.apiKeySecretRef).
func (m *TogetherModelMigration) APIKeySecret() *APIKeySecretRef { return m.Spec.APIKeySecretRef }
