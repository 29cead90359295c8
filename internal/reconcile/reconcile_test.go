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

package reconcile

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/together"
)

func drain(r *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func newBatch() *togetherv1.TogetherBatch {
	b := &togetherv1.TogetherBatch{}
	b.Name, b.Namespace, b.Generation = "b", "ns", 3
	return b
}

var batchConds = Conditions{
	Owned:    []string{togetherv1.ReadyCondition, togetherv1.ReconcilingCondition, togetherv1.StalledCondition, togetherv1.OutputReadyCondition},
	Positive: []string{togetherv1.OutputReadyCondition},
}

// summarizeTwice runs the same outcome on an object twice, as two reconciles
// that meet the same problem would, and returns the Events of each.
func summarizeTwice(t *testing.T, c Conditions, o Outcome) (*togetherv1.TogetherBatch, Report, []string, []string) {
	t.Helper()
	rec := events.NewFakeRecorder(10)
	b := newBatch()
	before := append([]metav1.Condition(nil), b.Status.Conditions...)
	rep := c.Summarize(context.Background(), b, before, o, rec)
	rep.Announce()
	first := drain(rec)
	before = append([]metav1.Condition(nil), b.Status.Conditions...)
	rep2 := c.Summarize(context.Background(), b, before, o, rec)
	rep2.Announce()
	return b, rep, first, drain(rec)
}

func TestStallSetsConditionsAndWarnsOncePerChange(t *testing.T) {
	b, rep, first, second := summarizeTwice(t, batchConds, Outcome{Err: Stalling(togetherv1.ReasonOutputTooLarge, "too big; use a PVC").On(togetherv1.OutputReadyCondition).After(time.Minute)})
	if rep.Err != nil || rep.Result.RequeueAfter != time.Minute || !rep.Observed {
		t.Fatalf("a stall is no error, keeps its requeue and is observed: %+v", rep)
	}
	conds := b.Status.Conditions
	if c := apimeta.FindStatusCondition(conds, togetherv1.StalledCondition); c == nil || c.Status != metav1.ConditionTrue || c.Reason != togetherv1.ReasonOutputTooLarge || c.ObservedGeneration != 3 {
		t.Fatalf("Stalled = %+v", c)
	}
	if !apimeta.IsStatusConditionFalse(conds, togetherv1.ReadyCondition) || apimeta.FindStatusCondition(conds, togetherv1.ReconcilingCondition) != nil {
		t.Fatalf("Ready must be False and Reconciling absent: %+v", conds)
	}
	if c := apimeta.FindStatusCondition(conds, togetherv1.OutputReadyCondition); c == nil || c.Status != metav1.ConditionFalse || c.Message != "too big; use a PVC" {
		t.Fatalf("OutputReady = %+v", c)
	}
	if len(first) != 1 || !strings.HasPrefix(first[0], "Warning OutputTooLarge too big") {
		t.Fatalf("first stall: want one Warning, got %q", first)
	}
	if len(second) != 0 {
		t.Fatalf("the same stall again must be quiet, got %q", second)
	}
}

func TestSilentStallHasNoEvent(t *testing.T) {
	_, _, first, _ := summarizeTwice(t, batchConds, Outcome{Err: Stalling("X", "y").Silent()})
	if len(first) != 0 {
		t.Fatalf("got %q", first)
	}
}

func TestWaitIsReconcilingWithoutError(t *testing.T) {
	b, rep, first, _ := summarizeTwice(t, batchConds, Outcome{Err: Waiting(togetherv1.ReasonBatchInProgress, "running", 0)})
	if rep.Err != nil || rep.Result.RequeueAfter != 0 || !rep.Observed {
		t.Fatalf("%+v", rep)
	}
	if c := apimeta.FindStatusCondition(b.Status.Conditions, togetherv1.ReconcilingCondition); c == nil || c.Reason != togetherv1.ReasonBatchInProgress {
		t.Fatalf("Reconciling = %+v", c)
	}
	if len(first) != 0 {
		t.Fatalf("a kind that does not announce Ready emits nothing while waiting: %q", first)
	}
}

func TestAnnounceReadyEmitsOnEachMoveOnly(t *testing.T) {
	c := batchConds
	c.AnnounceReady = true
	_, _, first, second := summarizeTwice(t, c, Outcome{Err: Waiting(togetherv1.ReasonBatchInProgress, "running", 0)})
	if len(first) != 1 || !strings.HasPrefix(first[0], "Normal BatchInProgress running") || len(second) != 0 {
		t.Fatalf("first %q, second %q", first, second)
	}
}

func TestRetryReturnsTheErrorUnlessTheServerSaidWhen(t *testing.T) {
	cause := errors.New("connection refused")
	b, rep, _, _ := summarizeTwice(t, batchConds, Outcome{Err: Retrying(togetherv1.ReasonAPIError, "retrying", cause)})
	if !errors.Is(rep.Err, cause) || rep.Observed {
		t.Fatalf("a retry without Retry-After goes to the backoff and is not observed: %+v", rep)
	}
	if !apimeta.IsStatusConditionTrue(b.Status.Conditions, togetherv1.ReconcilingCondition) {
		t.Fatal("Reconciling must be True while retrying")
	}

	limited := &together.APIError{StatusCode: http.StatusTooManyRequests, Operation: "GetBatch", RetryAfter: 7 * time.Second}
	_, rep, _, _ = summarizeTwice(t, batchConds, Outcome{Err: APIFailure(fmt.Errorf("wrapped: %w", limited), "reading the batch", "env X")})
	if rep.Err != nil || rep.Result.RequeueAfter != 7*time.Second {
		t.Fatalf("Retry-After must become the requeue: %+v", rep)
	}
}

func TestAccountFailuresStallTheSameForEveryKind(t *testing.T) {
	unauthorized := &together.APIError{StatusCode: http.StatusUnauthorized, Operation: "CreateBatch", Message: "invalid api key"}
	e := APIFailure(unauthorized, "creating the batch", "env TOGETHER_API_KEY")
	if e.Handling != Stall || e.Reason != togetherv1.ReasonUnauthorized || !strings.Contains(e.Message, "env TOGETHER_API_KEY") || e.RequeueAfter == 0 {
		t.Fatalf("401: %+v", e)
	}
	if strings.Contains(e.Message, "invalid api key") {
		t.Fatal("the message names where the key came from, not what the server echoed")
	}
	quota := &together.APIError{StatusCode: http.StatusPaymentRequired}
	if e := APIFailure(quota, "creating the job", ""); e.Handling != Stall || e.Reason != togetherv1.ReasonQuotaExceeded {
		t.Fatalf("402: %+v", e)
	}
	if e := APIFailure(&together.APIError{StatusCode: 500}, "x", ""); e.Handling != Retry || e.Reason != togetherv1.ReasonAPIError {
		t.Fatalf("500: %+v", e)
	}
}

func TestUnauthorizedSpeaksOnceAcrossRetries(t *testing.T) {
	unauthorized := &together.APIError{StatusCode: http.StatusUnauthorized}
	_, rep, first, second := summarizeTwice(t, batchConds, Outcome{Err: APIFailure(unauthorized, "listing files", "env TOGETHER_API_KEY")})
	if rep.Err != nil {
		t.Fatalf("a 401 must not reach controller-runtime (one stack trace per retry): %v", rep.Err)
	}
	if len(first) != 1 || !strings.HasPrefix(first[0], "Warning Unauthorized") || len(second) != 0 {
		t.Fatalf("first %q, second %q", first, second)
	}
}

func TestSuccessSetsReadyFromTheStepAndThePositiveConditions(t *testing.T) {
	rec := events.NewFakeRecorder(10)
	b := newBatch()
	MarkStalled(&b.Status.Conditions, 2, "Old", "old problem")
	ready := &metav1.Condition{Status: metav1.ConditionTrue, Reason: togetherv1.ReasonSucceeded, Message: "done"}
	rep := batchConds.Summarize(context.Background(), b, nil, Outcome{Ready: ready}, rec)
	if rep.Err != nil || !rep.Observed {
		t.Fatalf("%+v", rep)
	}
	if !apimeta.IsStatusConditionTrue(b.Status.Conditions, togetherv1.ReadyCondition) ||
		apimeta.FindStatusCondition(b.Status.Conditions, togetherv1.StalledCondition) != nil {
		t.Fatalf("Ready True clears Stalled: %+v", b.Status.Conditions)
	}

	SetCondition(&b.Status.Conditions, 3, togetherv1.OutputReadyCondition, metav1.ConditionFalse, togetherv1.ReasonFetching, "fetching")
	batchConds.Summarize(context.Background(), b, nil, Outcome{Ready: ready}, rec)
	if c := apimeta.FindStatusCondition(b.Status.Conditions, togetherv1.ReadyCondition); c.Status != metav1.ConditionFalse || c.Reason != togetherv1.ReasonFetching {
		t.Fatalf("a positive sub-condition that is not True keeps Ready False: %+v", c)
	}
}

func TestPlainErrorsLeaveConditionsAlone(t *testing.T) {
	b := newBatch()
	SetReady(&b.Status.Conditions, 3, metav1.ConditionTrue, "Fine", "fine")
	boom := errors.New("API server unavailable")
	rep := batchConds.Summarize(context.Background(), b, nil, Outcome{Err: boom}, nil)
	if !errors.Is(rep.Err, boom) || rep.Observed || !apimeta.IsStatusConditionTrue(b.Status.Conditions, togetherv1.ReadyCondition) {
		t.Fatalf("%+v %+v", rep, b.Status.Conditions)
	}
	rep.Announce()
}
