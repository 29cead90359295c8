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
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/dataset"
	"github.com/together-operator/together-operator/internal/reconcile"
	"github.com/together-operator/together-operator/internal/together"
)

// ftFileValidationInterval paces reads of a file under validation.
const ftFileValidationInterval = 5 * time.Second

// fileReady holds the submission until Together has validated a file: a
// fine-tune file is usable only once its processing_status is COMPLETED
// (PENDING → QUEUED → RUNNING → COMPLETED, or FAILED / INVALID_FORMAT with
// validation_report.error saying why; together-go file.go, Together's skills
// data-formats.md). A server that reports no processing status is taken at
// its word that the file is usable.
func (r *TogetherFineTuneReconciler) fileReady(ctx context.Context, fileID string) error {
	f, err := r.API.GetFile(ctx, fileID)
	if err != nil {
		return r.apiFailure(err, "reading file "+fileID)
	}
	switch st := f.ProcessingStatus; {
	case st == together.FileCompleted || st == "":
		return nil
	case st.Rejected():
		why := "no reason given"
		if f.ValidationReport != nil && f.ValidationReport.Error != "" {
			why = f.ValidationReport.Error
		}
		return reconcile.Stalling(togetherv1.ReasonTrainingFileRejected,
			fmt.Sprintf("Together's validation rejected file %s (%s): %s. Fix the data; no job was submitted.", fileID, st, why))
	default:
		return reconcile.Waiting(togetherv1.ReasonTrainingFileValidating,
			fmt.Sprintf("Waiting for Together to validate file %s (%s); the job is submitted once it is COMPLETED.", fileID, st), ftFileValidationInterval)
	}
}

// validationFile returns the Together file ID to evaluate on: the one in
// spec.training.validationFile, or spec.training.validationData validated
// and uploaded as trainingData is (and reused by name after a crash). An
// empty ID means no evaluation.
func (r *TogetherFineTuneReconciler) validationFile(ctx context.Context, ft *togetherv1.TogetherFineTune) (string, error) {
	tr := ft.Spec.Training
	ref := tr.ValidationData
	if ref == nil {
		return tr.ValidationFile, nil
	}
	cm := &corev1.ConfigMap{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ft.Namespace, Name: ref.Name}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return "", reconcile.Stalling(togetherv1.ReasonTrainingDataNotFound,
				fmt.Sprintf("ConfigMap %q (spec.training.validationData) does not exist; create it with key %q holding JSONL evaluation data.", ref.Name, ref.Key))
		}
		return "", fmt.Errorf("reading validation data ConfigMap %s/%s: %w", ft.Namespace, ref.Name, err)
	}
	data, found := cm.Data[ref.Key]
	if !found {
		return "", reconcile.Stalling(togetherv1.ReasonTrainingDataNotFound,
			fmt.Sprintf("ConfigMap %q has no key %q; add the JSONL evaluation data under that key.", ref.Name, ref.Key))
	}
	if _, verr := dataset.ValidateFineTune(strings.NewReader(data)); verr != nil {
		var le *dataset.LineError
		if !errors.As(verr, &le) {
			return "", fmt.Errorf("validating evaluation data of ConfigMap %s/%s: %w", ft.Namespace, ref.Name, verr)
		}
		return "", reconcile.Stalling(togetherv1.ReasonInvalidTrainingData,
			fmt.Sprintf("Evaluation data in ConfigMap %q key %q is invalid at line %d: %s. Fix the data; nothing was uploaded.", ref.Name, ref.Key, le.Line, le.Reason))
	}
	name := strings.TrimSuffix(trainingFileName(ft, data), ".jsonl") + "-eval.jsonl"
	return r.uploadOnce(ctx, ft, name, data, "evaluation data", ref.Name, &ft.Status.ValidationFileID)
}
