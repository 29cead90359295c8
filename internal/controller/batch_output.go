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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/fetch"
	"github.com/together-operator/together-operator/internal/reconcile"
	"github.com/together-operator/together-operator/internal/together"
)

const (
	// MaxConfigMapOutputBytes is the most output plus errors written to a
	// ConfigMap: the API server refuses objects over 1 MiB, and the rest of
	// the object needs a little room.
	MaxConfigMapOutputBytes = 1<<20 - 8<<10
	// OutputKey and ErrorsKey are the ConfigMap keys of the results.
	OutputKey = "output.jsonl"
	ErrorsKey = "errors.jsonl"
	// batchLabel marks objects the operator made for a TogetherBatch.
	batchLabel = "together.ai/batch"
	// fetchMountPath is where fetch Jobs mount the output volume.
	fetchMountPath = "/data"
	// fetchRetryDelay is the pause before a failed fetch Job is replaced.
	fetchRetryDelay = time.Second
)

// reconcileOutput writes a succeeded batch's results where spec.output asks
// and sets Ready once they are written and verified.
func (r *TogetherBatchReconciler) reconcileOutput(ctx context.Context, tb *togetherv1.TogetherBatch, s *scope) (ctrl.Result, error) {
	st := &tb.Status
	if st.Phase != togetherv1.BatchSucceeded {
		return ctrl.Result{}, nil
	}
	out := tb.Spec.Output
	if out == nil {
		if st.Usage == nil {
			// No output is kept, but the tokens are only in the output
			// file: read it once to count them.
			parts, err := r.fetchParts(ctx, tb)
			if err != nil {
				return ctrl.Result{}, r.fetchFailure(err)
			}
			res, err := fetch.Fetch(ctx, r.API, parts, io.Discard, nil, fetch.Options{})
			if err != nil {
				return ctrl.Result{}, r.fetchFailure(err)
			}
			st.Usage = usageOf(res)
		}
		apimeta.RemoveStatusCondition(&st.Conditions, togetherv1.OutputReadyCondition)
		s.succeeded(metav1.ConditionTrue, togetherv1.ReasonSucceeded,
			fmt.Sprintf("Batch %s completed using %d tokens; no output was requested.", batchIDs(tb), st.Usage.TotalTokens))
		return ctrl.Result{}, nil
	}
	if c := apimeta.FindStatusCondition(st.Conditions, togetherv1.OutputReadyCondition); c != nil && c.Status == metav1.ConditionTrue && st.Output != nil {
		r.markOutputReady(tb, s)
		return ctrl.Result{}, nil
	}
	if c := apimeta.FindStatusCondition(st.Conditions, togetherv1.OutputReadyCondition); c != nil &&
		(c.Reason == togetherv1.ReasonOutputTooLarge || c.Reason == togetherv1.ReasonFetchFailed) && c.ObservedGeneration == tb.Generation {
		// Stalled until the spec changes (e.g. to a PVC output).
		return ctrl.Result{}, reconcile.Stalling(c.Reason, c.Message).On(togetherv1.OutputReadyCondition)
	}
	parts, err := r.fetchParts(ctx, tb)
	if err != nil {
		return ctrl.Result{}, r.fetchFailure(err)
	}
	if out.ConfigMap != nil {
		return ctrl.Result{}, r.writeConfigMapOutput(ctx, tb, s, parts)
	}
	return ctrl.Result{}, r.followFetchJob(ctx, tb, s, parts)
}

// markOutputReady says Ready once the output is written.
func (r *TogetherBatchReconciler) markOutputReady(tb *togetherv1.TogetherBatch, s *scope) {
	o := tb.Status.Output
	var tokens int64
	if u := tb.Status.Usage; u != nil {
		tokens = u.TotalTokens
	}
	s.succeeded(metav1.ConditionTrue, togetherv1.ReasonSucceeded,
		fmt.Sprintf("Batch %s completed using %d tokens; %d results and %d failed requests written to %s.",
			batchIDs(tb), tokens, o.Records, o.FailedRecords, o.Location))
}

// usageOf is the token use the output's lines reported.
func usageOf(res fetch.Result) *togetherv1.BatchUsage {
	return &togetherv1.BatchUsage{PromptTokens: res.Usage.PromptTokens, CompletionTokens: res.Usage.CompletionTokens,
		TotalTokens: res.Usage.TotalTokens, UncountedLines: res.Usage.Uncounted}
}

// fetchParts lists the files to fetch in input order. The input file of each
// part lets the fetcher restore input order, which Together does not keep.
func (r *TogetherBatchReconciler) fetchParts(ctx context.Context, tb *togetherv1.TogetherBatch) ([]fetch.Part, error) {
	st := &tb.Status
	if len(st.Parts) > 0 {
		parts := make([]fetch.Part, 0, len(st.Parts))
		for _, p := range st.Parts {
			if p.OutputFileID == "" && p.ErrorFileID == "" {
				b, err := r.API.GetBatch(ctx, p.BatchID)
				if err != nil {
					return nil, fmt.Errorf("reading batch %s for its output files: %w", p.BatchID, err)
				}
				p.OutputFileID, p.ErrorFileID, p.InputFileID = b.OutputFileID, b.ErrorFileID, b.InputFileID
				st.Parts[p.Index].OutputFileID, st.Parts[p.Index].ErrorFileID = b.OutputFileID, b.ErrorFileID
			}
			parts = append(parts, fetch.Part{InputFileID: p.InputFileID, OutputFileID: p.OutputFileID, ErrorFileID: p.ErrorFileID})
		}
		return parts, nil
	}
	// One read gives the input file, and the output files when a pushed
	// batch.done left them out.
	b, err := r.API.GetBatch(ctx, st.BatchID)
	if err != nil {
		return nil, fmt.Errorf("reading batch %s for its output files: %w", st.BatchID, err)
	}
	if st.OutputFileID == "" {
		st.OutputFileID = b.OutputFileID
	}
	if st.ErrorFileID == "" {
		st.ErrorFileID = b.ErrorFileID
	}
	return []fetch.Part{{InputFileID: b.InputFileID, OutputFileID: st.OutputFileID, ErrorFileID: st.ErrorFileID}}, nil
}

// fetchFailure reports a failure while fetching the output: a Together
// error is classified as every Together error is; anything else (a
// checksum that does not match) is retried.
func (r *TogetherBatchReconciler) fetchFailure(err error) error {
	var api *together.APIError
	if errors.As(err, &api) {
		e, _ := reconcile.As(r.apiFailure(err, "reading the batch output"))
		return e.On(togetherv1.OutputReadyCondition)
	}
	return reconcile.Retrying(togetherv1.ReasonFetching, fmt.Sprintf("Fetching the output failed and will be retried: %v.", err), err).On(togetherv1.OutputReadyCondition)
}

// outputTooLarge stalls a ConfigMap output that cannot fit.
func (r *TogetherBatchReconciler) outputTooLarge(size int64) error {
	what := "more than"
	if size > 0 {
		what = fmt.Sprintf("%d bytes, more than", size)
	}
	msg := fmt.Sprintf("The output is %s a ConfigMap holds (%d bytes). Use spec.output.persistentVolumeClaim instead of spec.output.configMap.", what, MaxConfigMapOutputBytes)
	return reconcile.Stalling(togetherv1.ReasonOutputTooLarge, msg).On(togetherv1.OutputReadyCondition)
}

// writeConfigMapOutput fetches a small output in-process and writes it to
// the ConfigMap. Sizes are checked before downloading and enforced while
// streaming, so an oversized output never fills the operator's memory.
func (r *TogetherBatchReconciler) writeConfigMapOutput(ctx context.Context, tb *togetherv1.TogetherBatch, s *scope, parts []fetch.Part) error {
	var declared int64
	for _, p := range parts {
		for _, id := range []string{p.OutputFileID, p.ErrorFileID} {
			if id == "" {
				continue
			}
			f, err := r.API.GetFile(ctx, id)
			if err != nil {
				return r.fetchFailure(fmt.Errorf("reading size of file %s: %w", id, err))
			}
			declared += f.Bytes
		}
	}
	if declared > MaxConfigMapOutputBytes {
		return r.outputTooLarge(declared)
	}
	var out, errs bytes.Buffer
	res, err := fetch.Fetch(ctx, r.API, parts, &out, &errs, fetch.Options{Limit: MaxConfigMapOutputBytes})
	if errors.Is(err, fetch.ErrTooLarge) {
		return r.outputTooLarge(0)
	}
	if err != nil {
		return r.fetchFailure(err)
	}
	name := tb.Spec.Output.ConfigMap.Name
	cm := &corev1.ConfigMap{}
	err = r.Get(ctx, client.ObjectKey{Namespace: tb.Namespace, Name: name}, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tb.Namespace, Labels: map[string]string{batchLabel: tb.Name}}}
	case err != nil:
		return fmt.Errorf("reading output ConfigMap %s: %w", name, err)
	case cm.Labels[batchLabel] != tb.Name:
		return reconcile.Stalling(togetherv1.ReasonOutputConflict, fmt.Sprintf(
			"ConfigMap %q already exists and was not created for this batch; delete it or choose another spec.output.configMap.name.", name)).On(togetherv1.OutputReadyCondition)
	}
	cm.Data = map[string]string{OutputKey: out.String(), ErrorsKey: errs.String()}
	if tb.EffectiveDeletionPolicy() != togetherv1.DeletionPolicyRetain {
		if err := controllerutil.SetOwnerReference(tb, cm, r.Scheme()); err != nil {
			return fmt.Errorf("owning output ConfigMap %s: %w", name, err)
		}
	}
	if cm.ResourceVersion == "" {
		err = r.Create(ctx, cm)
	} else {
		err = r.Update(ctx, cm)
	}
	if err != nil {
		return fmt.Errorf("writing output ConfigMap %s: %w", name, err)
	}
	// Verify what the API server stored, not what was sent.
	stored := &corev1.ConfigMap{}
	if err := r.Get(ctx, client.ObjectKeyFromObject(cm), stored); err != nil {
		return fmt.Errorf("reading back output ConfigMap %s: %w", name, err)
	}
	sum := sha256.Sum256([]byte(stored.Data[OutputKey]))
	if got := hex.EncodeToString(sum[:]); got != res.SHA256 || int64(len(stored.Data[OutputKey])) != res.Bytes {
		return r.fetchFailure(fmt.Errorf("ConfigMap %s holds %d bytes with sha256 %s, but %d bytes with sha256 %s were written", name, len(stored.Data[OutputKey]), got, res.Bytes, res.SHA256))
	}
	r.recordOutput(tb, s, "configmap/"+name, res)
	return nil
}

// recordOutput stores what was written and marks the batch Ready.
func (r *TogetherBatchReconciler) recordOutput(tb *togetherv1.TogetherBatch, s *scope, location string, res fetch.Result) {
	tb.Status.Output = &togetherv1.OutputStatus{Location: location, Bytes: res.Bytes, SHA256: res.SHA256, Records: res.Records, FailedRecords: res.FailedRecords}
	if tb.Status.Usage == nil {
		tb.Status.Usage = usageOf(res)
	}
	reconcile.SetCondition(&tb.Status.Conditions, tb.Generation, togetherv1.OutputReadyCondition, metav1.ConditionTrue, togetherv1.ReasonOutputWritten,
		fmt.Sprintf("Wrote %d bytes (sha256 %s) to %s.", res.Bytes, res.SHA256, location))
	r.markOutputReady(tb, s)
}

// releaseOutput drops this resource's owner reference from the output
// ConfigMap so that deletionPolicy Retain keeps it.
func (r *TogetherBatchReconciler) releaseOutput(ctx context.Context, tb *togetherv1.TogetherBatch) error {
	if tb.Spec.Output == nil || tb.Spec.Output.ConfigMap == nil {
		return nil
	}
	cm := &corev1.ConfigMap{}
	err := r.Get(ctx, client.ObjectKey{Namespace: tb.Namespace, Name: tb.Spec.Output.ConfigMap.Name}, cm)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading output ConfigMap to release it: %w", err)
	}
	if ok, _ := controllerutil.HasOwnerReference(cm.OwnerReferences, tb, r.Scheme()); !ok {
		return nil
	}
	if err := controllerutil.RemoveOwnerReference(tb, cm, r.Scheme()); err != nil {
		return fmt.Errorf("releasing output ConfigMap: %w", err)
	}
	if err := r.Update(ctx, cm); err != nil {
		return fmt.Errorf("releasing output ConfigMap %s: %w", cm.Name, err)
	}
	return nil
}

// fetchJobName is the name of a batch's fetch Job;
// Job names become label values, so they are kept within 63 characters.
func fetchJobName(tb *togetherv1.TogetherBatch) string {
	name := tb.Name
	if len(name) > 50 {
		sum := sha256.Sum256([]byte(name))
		name = name[:41] + "-" + hex.EncodeToString(sum[:4])
	}
	return name + "-fetch"
}

// followFetchJob runs the output download in a Job that mounts the PVC: it
// creates the Job, waits for it, reads the size and checksum the fetch mode
// reported in its termination message, and retries a failed Job up to
// MaxFetchAttempts times. Each Job is deleted once it has been read.
func (r *TogetherBatchReconciler) followFetchJob(ctx context.Context, tb *togetherv1.TogetherBatch, s *scope, parts []fetch.Part) error {
	job := &batchv1.Job{}
	err := r.Get(ctx, client.ObjectKey{Namespace: tb.Namespace, Name: fetchJobName(tb)}, job)
	if apierrors.IsNotFound(err) {
		return r.startFetchJob(ctx, tb, parts)
	}
	if err != nil {
		return fmt.Errorf("reading fetch Job: %w", err)
	}
	if !metav1.IsControlledBy(job, tb) {
		// Someone else's Job with our name: neither trusted nor deleted.
		return fetchJobConflict(job.Name)
	}
	switch {
	case jobHasCondition(job, batchv1.JobComplete):
		msg, err := r.terminationMessage(ctx, job)
		if err != nil {
			return err
		}
		var res fetch.Result
		if jsonErr := json.Unmarshal([]byte(msg), &res); jsonErr != nil || res.SHA256 == "" {
			return r.fetchJobFailed(ctx, tb, job, "it completed without reporting the size and checksum of what it wrote")
		}
		pvc := tb.Spec.Output.PersistentVolumeClaim
		r.recordOutput(tb, s, "pvc/"+pvc.ClaimName+"/"+pvcPath(pvc), res)
		return r.deleteFetchJob(ctx, tb, job)
	case jobHasCondition(job, batchv1.JobFailed):
		msg, err := r.terminationMessage(ctx, job)
		if err != nil {
			return err
		}
		if msg == "" {
			msg = "no message"
		}
		return r.fetchJobFailed(ctx, tb, job, msg)
	}
	return reconcile.Waiting(togetherv1.ReasonFetching,
		fmt.Sprintf("Job %s is writing the output to PVC %s (attempt %d of %d).", job.Name, tb.Spec.Output.PersistentVolumeClaim.ClaimName, tb.Status.FetchAttempts, r.maxFetchAttempts()), 0)
}

func (r *TogetherBatchReconciler) maxFetchAttempts() int32 {
	if r.MaxFetchAttempts > 0 {
		return r.MaxFetchAttempts
	}
	return DefaultMaxFetchAttempts
}

// fetchJobFailed deletes a failed Job; the next reconcile starts another
// unless the attempts are used up.
func (r *TogetherBatchReconciler) fetchJobFailed(ctx context.Context, tb *togetherv1.TogetherBatch, job *batchv1.Job, why string) error {
	if err := r.deleteFetchJob(ctx, tb, job); err != nil {
		return err
	}
	if tb.Status.FetchAttempts >= r.maxFetchAttempts() {
		return reconcile.Stalling(togetherv1.ReasonFetchFailed, fmt.Sprintf(
			"Fetch Job %s failed %d times, last because %s. Check the PVC (space, access mode) and the operator's API key, then delete status by recreating the resource.", job.Name, tb.Status.FetchAttempts, why)).On(togetherv1.OutputReadyCondition)
	}
	return reconcile.Waiting(togetherv1.ReasonFetching, fmt.Sprintf("Fetch Job %s failed (%s); retrying.", job.Name, why), fetchRetryDelay)
}

// terminationMessage returns what the fetch container wrote to its
// termination log, read from the Job's Pods.
func (r *TogetherBatchReconciler) terminationMessage(ctx context.Context, job *batchv1.Job) (string, error) {
	pods := &corev1.PodList{}
	if err := r.apiReader().List(ctx, pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.JobNameLabel: job.Name}); err != nil {
		return "", fmt.Errorf("listing Pods of fetch Job %s: %w", job.Name, err)
	}
	msg := ""
	for _, p := range pods.Items {
		if !metav1.IsControlledBy(&p, job) {
			// A Pod that merely carries the label is not the Job's: its
			// message could be anyone's.
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.Message != "" {
				msg = t.Message
				if t.ExitCode == 0 {
					return msg, nil
				}
			}
		}
	}
	return msg, nil
}

func jobHasCondition(job *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func pvcPath(pvc *togetherv1.PVCOutput) string {
	if pvc.Path == "" {
		return "output.jsonl"
	}
	return pvc.Path
}

// fetchKeySecret is the Secret the fetch Job reads the API key from: the
// one this reconcile's account was read from (credentials.Resolver decides
// it, in one place: spec.apiKeySecretRef, or the namespace's
// together-api-key), which the resolver has just read and found holding a
// key. A batch on the operator-wide key has none to hand over — that key is
// never copied into a tenant's namespace — and stalls until the namespace
// has a key of its own (creating the Secret wakes it: Secrets are watched).
// The deprecated spec.output.persistentVolumeClaim.apiKeySecretRef, when
// set, must name the same Secret and key.
func (r *TogetherBatchReconciler) fetchKeySecret(tb *togetherv1.TogetherBatch) (*credentials.SecretRef, error) {
	sec := r.KeySecret
	if sec == nil {
		return nil, reconcile.Stalling(togetherv1.ReasonOutputNeedsNamespaceKey, fmt.Sprintf(
			"PVC output needs an API key Secret of namespace %s: this batch acts on the operator-wide key, which is never copied into a fetch Job in the namespace. "+
				"Create the namespace's Secret (kubectl -n %s create secret generic %s --from-literal=%s=<your Together API key>) or name one in spec.apiKeySecretRef, holding a key of the account that ran the batch; or write the output to spec.output.configMap.",
			tb.Namespace, tb.Namespace, credentials.DefaultSecretName, credentials.APIKeyKey)).On(togetherv1.OutputReadyCondition)
	}
	if legacy := tb.Spec.Output.PersistentVolumeClaim.APIKeySecretRef; legacy != nil {
		key := legacy.Key
		if key == "" {
			key = credentials.APIKeyKey
		}
		if legacy.Name != sec.Name || key != sec.Key {
			return nil, reconcile.Stalling(togetherv1.ReasonOutputKeyMismatch, fmt.Sprintf(
				"spec.output.persistentVolumeClaim.apiKeySecretRef (deprecated) names Secret %q key %q, but the batch acts with Secret %q key %q, which the fetch Job uses too. Remove the field, or move it to spec.apiKeySecretRef.",
				legacy.Name, key, sec.Name, sec.Key)).On(togetherv1.OutputReadyCondition)
		}
	}
	return sec, nil
}

// startFetchJob creates the Job for the next attempt, referencing the key
// Secret of the batch's own account (fetchKeySecret). The operator never
// creates that Secret nor copies the key.
func (r *TogetherBatchReconciler) startFetchJob(ctx context.Context, tb *togetherv1.TogetherBatch, parts []fetch.Part) error {
	if tb.Status.FetchAttempts >= r.maxFetchAttempts() {
		return reconcile.Stalling(togetherv1.ReasonFetchFailed, fmt.Sprintf(
			"All %d fetch attempts are used; check the PVC and the API key Secret, then recreate the resource to fetch again.", tb.Status.FetchAttempts)).On(togetherv1.OutputReadyCondition)
	}
	name := fetchJobName(tb)
	keySecret, err := r.fetchKeySecret(tb)
	if err != nil {
		return err
	}
	refused, err := r.checkOutputClaim(ctx, tb)
	if err != nil {
		return err
	}
	if refused != "" {
		return reconcile.Stalling(togetherv1.ReasonClaimNotOptedIn, refused).On(togetherv1.OutputReadyCondition)
	}
	if err := r.ensureFetchServiceAccount(ctx, tb.Namespace); err != nil {
		return err
	}
	job := r.fetchJob(tb, name, parts, keySecret)
	if err := controllerutil.SetControllerReference(tb, job, r.Scheme()); err != nil {
		return fmt.Errorf("owning fetch Job: %w", err)
	}
	if err := r.Create(ctx, job); apierrors.IsAlreadyExists(err) {
		// Not in the cache (which holds only the operator's Jobs), or not
		// yet: read it to tell a Job this resource created from a stranger's.
		existing := &batchv1.Job{}
		if err := r.apiReader().Get(ctx, client.ObjectKeyFromObject(job), existing); err != nil {
			return fmt.Errorf("reading existing fetch Job %s: %w", name, err)
		}
		if !metav1.IsControlledBy(existing, tb) {
			return fetchJobConflict(name)
		}
		return reconcile.Waiting(togetherv1.ReasonFetching, fmt.Sprintf("Job %s is writing the output.", name), 0)
	} else if err != nil {
		return fmt.Errorf("creating fetch Job %s: %w", name, err)
	}
	tb.Status.FetchAttempts++
	reconcile.SetCondition(&tb.Status.Conditions, tb.Generation, togetherv1.OutputReadyCondition, metav1.ConditionFalse, togetherv1.ReasonFetching,
		fmt.Sprintf("Job %s is writing the output to PVC %s.", name, tb.Spec.Output.PersistentVolumeClaim.ClaimName))
	return reconcile.Waiting(togetherv1.ReasonFetching,
		fmt.Sprintf("Job %s is writing the output to PVC %s (attempt %d of %d).", name, tb.Spec.Output.PersistentVolumeClaim.ClaimName, tb.Status.FetchAttempts, r.maxFetchAttempts()), 0)
}

// fetchJob builds the Job running the operator image in fetch mode. The API
// key comes from keySecret, the batch's own account's Secret, as an
// environment variable, never an argument.
// Retries are the reconciler's (backoffLimit 0), so that every attempt is
// counted in status.fetchAttempts.
func (r *TogetherBatchReconciler) fetchJob(tb *togetherv1.TogetherBatch, name string, parts []fetch.Part, keySecret *credentials.SecretRef) *batchv1.Job {
	pvc := tb.Spec.Output.PersistentVolumeClaim
	secretName, secretKey := keySecret.Name, keySecret.Key
	args := []string{"fetch"}
	for _, p := range parts {
		args = append(args, "--part", fetch.PartArg(p))
	}
	args = append(args, "--path", path.Join(fetchMountPath, pvcPath(pvc)), "--base-url", r.BaseURL)
	backoff := int32(0)
	nonRoot := true
	noEscalation := false
	noToken := false
	labels := map[string]string{batchLabel: tb.Name, togetherv1.ManagedByLabel: togetherv1.ManagedByValue}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tb.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit: &backoff,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{batchLabel: tb.Name}},
				Spec: corev1.PodSpec{
					// The fetcher talks to Together only: no Kubernetes
					// credentials, and an account bound to no role.
					ServiceAccountName:           togetherv1.FetchServiceAccount,
					AutomountServiceAccountToken: &noToken,
					RestartPolicy:                corev1.RestartPolicyNever,
					SecurityContext:              &corev1.PodSecurityContext{RunAsNonRoot: &nonRoot, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{{
						Name:  "fetch",
						Image: r.image(),
						Args:  args,
						Env: []corev1.EnvVar{{
							Name: fetch.APIKeyEnv,
							ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
								LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: secretKey,
							}},
						}},
						VolumeMounts:             []corev1.VolumeMount{{Name: "output", MountPath: fetchMountPath}},
						TerminationMessagePolicy: corev1.TerminationMessageReadFile,
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: &noEscalation,
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
					Volumes: []corev1.Volume{{
						Name:         "output",
						VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc.ClaimName}},
					}},
				},
			},
		},
	}
}

// deleteFetchJob removes the fetch Job and its Pods, only when this
// resource controls it; the UID precondition makes sure the Job deleted is
// the one checked, not one created in its place since. job may be nil: the
// Job is then read from the cache (which holds only the operator's Jobs).
func (r *TogetherBatchReconciler) deleteFetchJob(ctx context.Context, tb *togetherv1.TogetherBatch, job *batchv1.Job) error {
	if job == nil {
		job = &batchv1.Job{}
		err := r.Get(ctx, client.ObjectKey{Namespace: tb.Namespace, Name: fetchJobName(tb)}, job)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading fetch Job to delete it: %w", err)
		}
	}
	if !metav1.IsControlledBy(job, tb) {
		return nil
	}
	uid := job.UID
	if err := r.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground), client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting fetch Job %s: %w", job.Name, err)
	}
	return nil
}

// fetchJobConflict stalls the output when a Job with the fetch Job's name
// exists that this resource did not create: the operator neither trusts its
// result nor deletes it.
func fetchJobConflict(name string) error {
	return reconcile.Stalling(togetherv1.ReasonOutputConflict, fmt.Sprintf(
		"Job %q exists and was not created for this batch, so its result is not trusted and it is not deleted; delete or rename it, and the output is fetched again.", name)).
		On(togetherv1.OutputReadyCondition).After(batchRecheckInterval)
}

// checkOutputClaim returns why the claim named by
// spec.output.persistentVolumeClaim may not be mounted, or "" when it opted
// in (together.ai/batch-output=true as an annotation or a label).
func (r *TogetherBatchReconciler) checkOutputClaim(ctx context.Context, tb *togetherv1.TogetherBatch) (string, error) {
	name := tb.Spec.Output.PersistentVolumeClaim.ClaimName
	pvc := &corev1.PersistentVolumeClaim{}
	err := r.apiReader().Get(ctx, client.ObjectKey{Namespace: tb.Namespace, Name: name}, pvc)
	if apierrors.IsNotFound(err) {
		return fmt.Sprintf("PersistentVolumeClaim %s/%s named by spec.output.persistentVolumeClaim.claimName does not exist; create it with the annotation %s=true.", tb.Namespace, name, togetherv1.BatchOutputOptInAnnotation), nil
	}
	if err != nil {
		return "", fmt.Errorf("reading PersistentVolumeClaim %s: %w", name, err)
	}
	if pvc.Annotations[togetherv1.BatchOutputOptInAnnotation] == "true" || pvc.Labels[togetherv1.BatchOutputOptInAnnotation] == "true" {
		return "", nil
	}
	return fmt.Sprintf("PersistentVolumeClaim %s/%s has not opted in to receive batch output; if it should, run: kubectl -n %s annotate pvc %s %s=true", tb.Namespace, name, tb.Namespace, name, togetherv1.BatchOutputOptInAnnotation), nil
}

// ensureFetchServiceAccount creates the fetch Jobs' ServiceAccount in ns
// when it is missing. It holds no token and no role binding; an existing one
// is left as it is.
func (r *TogetherBatchReconciler) ensureFetchServiceAccount(ctx context.Context, ns string) error {
	noToken := false
	sa := &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: togetherv1.FetchServiceAccount,
			Labels: map[string]string{togetherv1.ManagedByLabel: togetherv1.ManagedByValue}},
		AutomountServiceAccountToken: &noToken,
	}
	err := r.apiReader().Get(ctx, client.ObjectKeyFromObject(sa), &corev1.ServiceAccount{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading ServiceAccount %s: %w", sa.Name, err)
	}
	if err := r.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ServiceAccount %s for fetch Jobs: %w", sa.Name, err)
	}
	return nil
}
