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
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/dataset"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/internal/reconcile"
	"github.com/together-operator/together-operator/internal/together"
)

// inputDigest identifies the parts of an input: their content (or file ID)
// in order, 12 hex digits.
func inputDigest(chunks []batchChunk) string {
	h := sha256.New()
	for _, c := range chunks {
		fmt.Fprintf(h, "%d:%s:", len(c.data), c.fileID)
		h.Write(c.data)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// planMatches reports whether chunks are the input the in-flight
// submission began with. A marker written before tags carried a digest is
// judged by the number of parts and their sizes.
func planMatches(tb *togetherv1.TogetherBatch, chunks []batchChunk) bool {
	m := tb.Status.Submission
	if m.Tag != fmt.Sprintf("tbatch-%s-a%d", tb.UID, m.Attempt) {
		return strings.HasSuffix(m.Tag, "-"+inputDigest(chunks))
	}
	if len(tb.Status.Parts) == 0 {
		return len(chunks) == 1
	}
	if len(tb.Status.Parts) != len(chunks) {
		return false
	}
	for i, p := range tb.Status.Parts {
		if int(p.Requests) != chunks[i].requests {
			return false
		}
	}
	return true
}

// abandonChangedPlan deals with a submission whose input changed after it
// began. Batches it already created are paid for, so they are found and
// recorded. If none was, the old plan is dropped and the current input is
// submitted afresh; if all were, the submission is complete; if only some
// were, the rest of the old input can no longer be submitted and a person
// must choose (a stall).
func (r *TogetherBatchReconciler) abandonChangedPlan(ctx context.Context, tb *togetherv1.TogetherBatch) error {
	planned := max(len(tb.Status.Parts), 1)
	sub := &batchSubmitter{r: r, tb: tb, recovering: true}
	var created []string
	for i := range planned {
		if id := sub.recorded(i); id != "" {
			created = append(created, id)
			continue
		}
		b, err := sub.findCreated(ctx, i, tb.Spec.Input.FileID)
		if err != nil {
			return r.submitFailure(err)
		}
		if b != nil {
			sub.record(i, b)
			created = append(created, b.ID)
		}
	}
	switch len(created) {
	case 0:
		tb.Status.Submission, tb.Status.Parts, tb.Status.Phase = nil, nil, ""
		return nil
	case planned:
		return nil // complete; the caller finishes it as a recovery would
	}
	return reconcile.Stalling(togetherv1.ReasonInputChanged, fmt.Sprintf(
		"The input changed while the batch was being submitted: batch(es) %s were already created from the earlier input (%d of %d parts) and are followed; the rest of that input can no longer be submitted. Restore the earlier input to finish the submission, or recreate the resource to submit the new one.",
		strings.Join(created, ", "), len(created), planned))
}

// submitted reports whether every batch of tb has been created.
func submitted(tb *togetherv1.TogetherBatch) bool {
	if tb.Status.BatchID == "" {
		return false
	}
	for _, p := range tb.Status.Parts {
		if p.BatchID == "" {
			return false
		}
	}
	return true
}

// reconcileSubmission makes sure tb follows its batches: it adopts
// spec.batchID, or validates, uploads and submits spec.input, finishing an
// interrupted submission instead of starting a second one.
func (r *TogetherBatchReconciler) reconcileSubmission(ctx context.Context, tb *togetherv1.TogetherBatch, s *scope) (ctrl.Result, error) {
	if submitted(tb) {
		return ctrl.Result{}, nil
	}
	if tb.Spec.BatchID != "" {
		return ctrl.Result{}, r.adoptBatch(ctx, tb)
	}
	if tb.Spec.Input == nil {
		return ctrl.Result{}, nil
	}
	chunks, err := r.readBatchInput(ctx, tb)
	if err != nil {
		return ctrl.Result{}, err
	}
	// A marker that was already there means an earlier reconcile may have
	// created batches it could not record: look for them before creating.
	recovering := tb.Status.Submission != nil
	if recovering && !planMatches(tb, chunks) {
		// The input changed after the submission began. Its parts are not
		// the ones planned, so nothing of it may be submitted under the old
		// plan (an input that grew used to be cut to the old upload, or to
		// index past the planned parts).
		if err := r.abandonChangedPlan(ctx, tb); err != nil {
			return ctrl.Result{}, err
		}
		if tb.Status.Submission != nil {
			return ctrl.Result{}, r.finishSubmission(tb)
		}
		recovering = false
	}
	if !recovering {
		tag := tb.SubmissionTag(1, inputDigest(chunks))
		tb.Status.Submission = &togetherv1.SubmissionMarker{Attempt: 1, Tag: tag, StartedAt: metav1.NewTime(r.now())}
		tb.Status.Phase = togetherv1.BatchPending
		if len(chunks) > 1 {
			tb.Status.Parts = make([]togetherv1.BatchPart, len(chunks))
			for i, c := range chunks {
				tb.Status.Parts[i] = togetherv1.BatchPart{Index: int32(i), Requests: int32(c.requests)}
			}
		}
		reconcile.MarkReconciling(&tb.Status.Conditions, tb.Generation, togetherv1.ReasonProgressing, "Submitting the batch to Together.")
		if err := s.persist(ctx, tb); err != nil {
			return ctrl.Result{}, fmt.Errorf("recording the submission marker: %w", err)
		}
	}
	sub := &batchSubmitter{r: r, tb: tb, recovering: recovering}
	for i, c := range chunks {
		if err := sub.submitPart(ctx, i, c); err != nil {
			return ctrl.Result{}, r.submitFailure(err)
		}
	}
	return ctrl.Result{}, r.finishSubmission(tb)
}

// finishSubmission clears the marker once every part has its batch.
func (r *TogetherBatchReconciler) finishSubmission(tb *togetherv1.TogetherBatch) error {
	tb.Status.Submission = nil
	tb.Status.AggregateParts()
	if tb.Status.Phase == togetherv1.BatchPending || tb.Status.Phase == "" {
		tb.Status.Phase = togetherv1.BatchValidating
	}
	return nil
}

// batchChunk is the input of one part: the JSONL to upload, or an existing
// file ID when spec.input.fileID is submitted as is.
type batchChunk struct {
	data     []byte
	fileID   string
	requests int
}

// readBatchInput returns the parts to submit, or a stall that says why the
// input cannot be used.
func (r *TogetherBatchReconciler) readBatchInput(ctx context.Context, tb *togetherv1.TogetherBatch) ([]batchChunk, error) {
	in := tb.Spec.Input
	if in.FileID != "" {
		return []batchChunk{{fileID: in.FileID}}, nil
	}
	ref := in.ConfigMapRef
	cm := &corev1.ConfigMap{}
	err := r.Get(ctx, client.ObjectKey{Namespace: tb.Namespace, Name: ref.Name}, cm)
	if apierrors.IsNotFound(err) {
		return nil, reconcile.Stalling(togetherv1.ReasonInputNotFound,
			fmt.Sprintf("ConfigMap %q does not exist; create it with the JSONL requests under key %q.", ref.Name, ref.Key))
	}
	if err != nil {
		return nil, fmt.Errorf("reading input ConfigMap %s: %w", ref.Name, err)
	}
	data, found := cm.Data[ref.Key]
	if !found {
		return nil, reconcile.Stalling(togetherv1.ReasonInputNotFound,
			fmt.Sprintf("ConfigMap %q has no key %q; put the JSONL requests under that key or fix spec.input.configMapRef.key.", ref.Name, ref.Key))
	}
	endpoint := tb.Spec.Endpoint
	if endpoint == "" {
		endpoint = dataset.EndpointChatCompletions
	}
	reqs, err := dataset.ParseBatchInput(strings.NewReader(data), endpoint)
	var le *dataset.LineError
	if errors.As(err, &le) {
		// The ConfigMap is watched: a fixed input wakes the batch.
		return nil, reconcile.Stalling(togetherv1.ReasonInvalidInput,
			fmt.Sprintf("Line %d of ConfigMap %q key %q is not a valid %s request: %s. Fix the line; nothing was uploaded.", le.Line, ref.Name, ref.Key, endpoint, le.Reason))
	}
	if err != nil {
		return nil, fmt.Errorf("validating ConfigMap %s key %s: %w", ref.Name, ref.Key, err)
	}
	var chunks []batchChunk
	for _, part := range dataset.SplitBatchRequests(reqs, int(tb.Spec.MaxRequestsPerBatch)) {
		chunks = append(chunks, batchChunk{data: dataset.EncodeBatchRequests(part), requests: len(part)})
	}
	return chunks, nil
}

// batchSubmitter creates the parts of one submission, reading the account's
// files and batches at most once when it has to look for earlier work.
type batchSubmitter struct {
	r          *TogetherBatchReconciler
	tb         *togetherv1.TogetherBatch
	recovering bool
	files      []together.File
	batches    []together.Batch
	listed     bool
}

// recorded returns the batch ID already recorded for part i.
func (s *batchSubmitter) recorded(i int) string {
	if len(s.tb.Status.Parts) > 0 {
		return s.tb.Status.Parts[i].BatchID
	}
	return s.tb.Status.BatchID
}

// record stores the batch created or found for part i.
func (s *batchSubmitter) record(i int, b *together.Batch) {
	st := &s.tb.Status
	if len(st.Parts) > 0 {
		part := &st.Parts[i]
		part.BatchID, part.InputFileID = b.ID, b.InputFileID
		part.Phase = batchPhaseOf(b.Status)
		if i == 0 {
			st.BatchID = b.ID
		}
		return
	}
	st.BatchID = b.ID
	st.Phase = batchPhaseOf(b.Status)
}

func (s *batchSubmitter) list(ctx context.Context) error {
	if s.listed {
		return nil
	}
	var err error
	if s.files, err = s.r.API.ListFiles(ctx); err != nil {
		return fmt.Errorf("listing files to resume submission: %w", err)
	}
	if s.batches, err = s.r.API.ListBatches(ctx); err != nil {
		return fmt.Errorf("listing batches to resume submission: %w", err)
	}
	s.listed = true
	return nil
}

// submitPart uploads and creates part i unless that already happened.
func (s *batchSubmitter) submitPart(ctx context.Context, i int, c batchChunk) error {
	if s.recorded(i) != "" {
		return nil
	}
	tag := s.tb.Status.Submission.Tag
	fileID := c.fileID
	if s.recovering {
		b, err := s.findCreated(ctx, i, fileID)
		if err != nil {
			return err
		}
		if b != nil {
			s.record(i, b)
			return nil
		}
		if fileID == "" {
			fileID = s.uploaded(i)
		}
	}
	if fileID == "" {
		f, err := s.r.API.UploadFile(ctx, togetherv1.BatchPartFileName(tag, i), together.FilePurposeBatch, bytes.NewReader(c.data))
		if err != nil {
			return fmt.Errorf("uploading input part %d: %w", i, err)
		}
		fileID = f.ID
	}
	b, err := s.r.API.CreateBatch(ctx, together.CreateBatchRequest{
		InputFileID: fileID, Endpoint: s.tb.Spec.Endpoint, CompletionWindow: s.tb.Spec.CompletionWindow, ModelID: s.tb.Spec.Model,
	})
	if err != nil {
		return fmt.Errorf("creating batch for part %d: %w", i, err)
	}
	if b.InputFileID == "" {
		b.InputFileID = fileID
	}
	s.record(i, b)
	return nil
}

// findCreated returns the batch this submission created for part i, found
// through the part's tagged upload (or fileID, for spec.input.fileID).
func (s *batchSubmitter) findCreated(ctx context.Context, i int, fileID string) (*together.Batch, error) {
	if err := s.list(ctx); err != nil {
		return nil, err
	}
	if fileID == "" {
		fileID = s.uploaded(i)
	}
	return s.findBatch(fileID), nil
}

// uploaded returns the file this submission uploaded for part i, or "".
func (s *batchSubmitter) uploaded(i int) string {
	name := togetherv1.BatchPartFileName(s.tb.Status.Submission.Tag, i)
	id := ""
	for _, f := range s.files {
		if f.Filename == name {
			id = f.ID
		}
	}
	return id
}

// findBatch returns a batch created from fileID by this submission. An
// uploaded part's file carries the tag, so any batch on it is ours. A
// spec.input.fileID may also feed other batches, so only one created after
// the marker was written counts.
func (s *batchSubmitter) findBatch(fileID string) *together.Batch {
	if fileID == "" {
		return nil
	}
	tagged := s.tb.Spec.Input.FileID == ""
	since := s.tb.Status.Submission.StartedAt.Time
	for i := range s.batches {
		b := &s.batches[i]
		if b.InputFileID != fileID {
			continue
		}
		if tagged || (b.CreatedAt != nil && !b.CreatedAt.Before(since)) {
			return b
		}
	}
	return nil
}

// submitFailure classifies a failed submission: a refused request needs a
// person; the rest is what every Together failure is (apiFailure).
func (r *TogetherBatchReconciler) submitFailure(err error) error {
	if together.IsInvalidRequest(err) {
		return reconcile.Stalling(togetherv1.ReasonBatchRejected,
			fmt.Sprintf("Together refused the batch: %v. Check spec.model, spec.endpoint and the input file, then recreate the resource.", err))
	}
	return r.apiFailure(err, "submitting the batch")
}

// adoptBatch reads spec.batchID once and fills status from it; from then on
// the event intake keeps status current.
func (r *TogetherBatchReconciler) adoptBatch(ctx context.Context, tb *togetherv1.TogetherBatch) error {
	b, err := r.API.GetBatch(ctx, tb.Spec.BatchID)
	if together.IsNotFound(err) {
		return reconcile.Stalling(togetherv1.ReasonBatchNotFound,
			fmt.Sprintf("Together has no batch %q; spec.batchID cannot be changed, so recreate the resource with the right ID.", tb.Spec.BatchID)).After(batchRecheckInterval)
	}
	if err != nil {
		return r.apiFailure(err, "reading batch "+tb.Spec.BatchID)
	}
	fillBatchStatus(&tb.Status, b)
	return nil
}

// fillBatchStatus copies what a read of the batch says into status.
func fillBatchStatus(st *togetherv1.TogetherBatchStatus, b *together.Batch) {
	st.BatchID = b.ID
	st.Phase = batchPhaseOf(b.Status)
	st.Progress = int32(b.Progress)
	st.OutputFileID = b.OutputFileID
	st.ErrorFileID = b.ErrorFileID
	st.Error = b.Error
}

// batchPhaseOf maps Together's status to the resource's phase, with the
// same table the event intake uses.
func batchPhaseOf(s together.BatchStatus) togetherv1.BatchPhase {
	if p, ok := lattice.BatchPhaseFor(string(s)); ok {
		return p
	}
	return togetherv1.BatchPending
}
