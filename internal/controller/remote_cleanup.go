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
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/reconcile"
	"github.com/together-operator/together-operator/internal/together"
)

// releaseRemote runs the remote cleanup a finalizer guards (cancelling a
// job, deleting an endpoint or a webhook registration) and decides when the
// finalizer lets go without it, so that a resource — and with it its
// namespace — can always be deleted:
//
//   - at once when the resource carries SkipRemoteCleanupAnnotation=true;
//   - at once when Together answers 401 or 403: the credentials cannot act
//     on that account, and retrying will not change that;
//   - after MaxCleanupAttempts failed attempts (counted in *attempts, a
//     status field, so that a restart does not reset the count).
//
// A skip sets RemoteCleanupCondition, writes status at once (the finalizer
// goes next, and the object with it) and emits one Warning Event saying
// what a person should clean up by hand. It returns nil when the finalizer
// may be removed, and the cleanup's error (retried with backoff) otherwise.
func releaseRemote(ctx context.Context, obj reconcile.Object, attempts *int32, s *scope, rec EventRecorder, what string, cleanup func() error) error {
	skip := func(reason, msg string) error {
		reconcile.SetCondition(obj.StatusConditions(), obj.GetGeneration(), togetherv1.RemoteCleanupCondition, metav1.ConditionFalse, reason, msg)
		if s != nil {
			if err := s.persist(ctx, obj); err != nil {
				return err
			}
		}
		if rec != nil {
			rec.Eventf(obj, nil, togetherv1.EventTypeWarning, reason, "Delete", "%s", msg)
		}
		return nil
	}
	if obj.GetAnnotations()[togetherv1.SkipRemoteCleanupAnnotation] == "true" {
		return skip(togetherv1.ReasonCleanupSkippedOnRequest, fmt.Sprintf(
			"Deleted without %s, as the annotation %s=true asks; clean up on Together by hand if needed.", what, togetherv1.SkipRemoteCleanupAnnotation))
	}
	err := cleanup()
	if err == nil {
		return nil
	}
	if re, ok := reconcile.As(err); ok && re.Handling == reconcile.Wait {
		return err // progressing (an endpoint stopping), not failing
	}
	if errors.Is(err, credentials.ErrNoCredentials) {
		return skip(togetherv1.ReasonCleanupUnauthorized, fmt.Sprintf(
			"Deleted without %s: %v, so the operator cannot act on the account; clean up on Together by hand.", what, err))
	}
	if status := apiStatus(err); status == http.StatusUnauthorized || status == http.StatusForbidden {
		return skip(togetherv1.ReasonCleanupUnauthorized, fmt.Sprintf(
			"Deleted without %s: Together refused the namespace's credentials (HTTP %d), so the operator cannot act on that account; clean up on Together by hand with a key that can.", what, status))
	}
	*attempts++
	if *attempts >= togetherv1.MaxCleanupAttempts {
		return skip(togetherv1.ReasonCleanupGaveUp, fmt.Sprintf(
			"Deleted without %s after %d failed attempts (last: %v); clean up on Together by hand.", what, *attempts, err))
	}
	return fmt.Errorf("%s (attempt %d of %d): %w", what, *attempts, togetherv1.MaxCleanupAttempts, err)
}

// apiStatus is the HTTP status of a Together API error, or 0.
func apiStatus(err error) int {
	var e *together.APIError
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}
