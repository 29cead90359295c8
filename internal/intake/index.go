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

package intake

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// Field indexes that find the resource an event is about. They cover the
// spec's ID (an adopted job before it is first reconciled), the current
// status ID, and earlier IDs (previous fine-tune attempts, batch parts), so an
// event about a previous attempt is recognised as stale rather than unmatched.
const (
	IndexFineTuneJobID = "together.ai/fineTuneJobID"
	IndexBatchID       = "together.ai/batchID"
	// IndexSubmitting is "true" for a resource holding a submission marker
	// (between writing the marker and recording the created job's ID).
	IndexSubmitting = "together.ai/submitting"
)

// SetupIndexes registers the field indexes the apply step looks resources up by.
func SetupIndexes(ctx context.Context, idx client.FieldIndexer) error {
	if err := idx.IndexField(ctx, &togetherv1.TogetherFineTune{}, IndexFineTuneJobID, fineTuneJobIDs); err != nil {
		return fmt.Errorf("indexing fine-tunes by job ID: %w", err)
	}
	if err := idx.IndexField(ctx, &togetherv1.TogetherBatch{}, IndexBatchID, batchIDs); err != nil {
		return fmt.Errorf("indexing batches by batch ID: %w", err)
	}
	if err := idx.IndexField(ctx, &togetherv1.TogetherFineTune{}, IndexSubmitting, func(o client.Object) []string {
		return submitting(o.(*togetherv1.TogetherFineTune).Status.Submission)
	}); err != nil {
		return fmt.Errorf("indexing fine-tunes by submission: %w", err)
	}
	if err := idx.IndexField(ctx, &togetherv1.TogetherBatch{}, IndexSubmitting, func(o client.Object) []string {
		return submitting(o.(*togetherv1.TogetherBatch).Status.Submission)
	}); err != nil {
		return fmt.Errorf("indexing batches by submission: %w", err)
	}
	return nil
}

func fineTuneJobIDs(o client.Object) []string { return o.(*togetherv1.TogetherFineTune).JobIDs() }

func batchIDs(o client.Object) []string { return o.(*togetherv1.TogetherBatch).BatchIDs() }

func submitting(m *togetherv1.SubmissionMarker) []string {
	if m == nil {
		return nil
	}
	return []string{"true"}
}
