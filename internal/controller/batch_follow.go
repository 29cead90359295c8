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
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/reconcile"
)

// batchTokensTotal is the billing metric. It is increased once per batch,
// from status.totalTokens, guarded by status.accountedTokens.
var batchTokensTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "together_batch_tokens_total",
	Help: "Tokens used by finished Together batches, counted once per batch.",
}, []string{"namespace", "model"})

func init() {
	metrics.Registry.MustRegister(batchTokensTotal)
}

// reconcilePhase says what the phase implies: it stops the reconcile while
// the batch is still running (there is nothing to fetch yet), and stalls a
// batch that failed, expired or was cancelled.
func (r *TogetherBatchReconciler) reconcilePhase(_ context.Context, tb *togetherv1.TogetherBatch, _ *scope) (ctrl.Result, error) {
	st := &tb.Status
	switch st.Phase {
	case togetherv1.BatchFailed:
		msg := st.Error
		if msg == "" {
			msg = "no reason given"
		}
		return ctrl.Result{}, reconcile.Stalling(togetherv1.ReasonBatchFailed,
			fmt.Sprintf("Together reported batch %s failed (%s). Fix the input or the model and create a new TogetherBatch.", batchIDs(tb), msg))
	case togetherv1.BatchExpired:
		return ctrl.Result{}, reconcile.Stalling(togetherv1.ReasonBatchExpired,
			fmt.Sprintf("Batch %s did not finish within its completion window. Set spec.maxRequestsPerBatch to split the input into smaller batches and create a new TogetherBatch.", batchIDs(tb)))
	case togetherv1.BatchCancelled:
		return ctrl.Result{}, reconcile.Stalling(togetherv1.ReasonBatchCancelled,
			fmt.Sprintf("Batch %s was cancelled; create a new TogetherBatch to run the requests again.", batchIDs(tb)))
	case togetherv1.BatchSucceeded:
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, reconcile.Waiting(togetherv1.ReasonBatchInProgress,
		fmt.Sprintf("Batch %s is %s (%d%%); the output is fetched when it completes.", batchIDs(tb), st.Phase, st.Progress), 0)
}

// batchIDs names the batch, or every part's batch, for messages.
func batchIDs(tb *togetherv1.TogetherBatch) string { return strings.Join(tb.BatchIDs(), ", ") }

// reconcileTokens adds a finished batch's tokens to the billing counter,
// each token once. The decision is derived from status, not from
// deliveries, so duplicate events and restarts change nothing:
// accountedTokens is raised to totalTokens first and the counter is
// increased by the difference only after that write succeeded. Tokens can
// arrive after the batch ended (a later event for the same ending carries
// them); they are then added as a further difference. A crash between the
// write and the increase loses that difference from the metric rather than
// counting it twice; under-counting is the safer error for a billing
// signal, and status.totalTokens stays the exact record.
func (r *TogetherBatchReconciler) reconcileTokens(ctx context.Context, tb *togetherv1.TogetherBatch, s *scope) (ctrl.Result, error) {
	st := &tb.Status
	if !st.Phase.IsTerminal() {
		return ctrl.Result{}, nil
	}
	legacy := st.TokensAccounted && st.AccountedTokens == 0
	if st.Phase == togetherv1.BatchSucceeded && st.Usage == nil && !legacy {
		// The tokens are counted from the output file, which is read
		// next; they are accounted on a later pass.
		return ctrl.Result{}, nil
	}
	// The output's usage is the record; a pushed total (the project's own
	// contract) counts when it is higher, so neither is counted twice.
	tokens := st.TotalTokens
	if st.Usage != nil && st.Usage.TotalTokens > tokens {
		tokens = st.Usage.TotalTokens
	}
	delta := tokens - st.AccountedTokens
	if delta <= 0 && !legacy {
		return ctrl.Result{}, nil
	}
	before, beforeLegacy := st.AccountedTokens, st.TokensAccounted
	st.AccountedTokens, st.TokensAccounted = tokens, false
	if err := s.persist(ctx, tb); err != nil {
		st.AccountedTokens, st.TokensAccounted = before, beforeLegacy
		return ctrl.Result{}, fmt.Errorf("recording the tokens accounted: %w", err)
	}
	if legacy {
		// An older operator counted totalTokens and recorded no amount.
		return ctrl.Result{}, nil
	}
	model := tb.Spec.Model
	if model == "" {
		model = "unknown"
	}
	batchTokensTotal.WithLabelValues(tb.Namespace, model).Add(float64(delta))
	return ctrl.Result{}, nil
}
