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

// Package reconcile holds what the four reconcilers share about the outcome
// of a reconcile: errors that say how they are to be handled (stall, wait,
// retry) with a reason a person can act on, and the one function, Summarize,
// that turns an outcome into conditions, a requeue, an Event and a log line.
// fluxcd's internal/error and summarize packages are the model: a step says
// what happened; it does not decide how that is reported.
package reconcile

import (
	"errors"
	"fmt"
	"strings"
	"time"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/together"
)

// Handling says what the end of a reconcile does with an Error.
type Handling int

const (
	// Retry is a transient failure: the reconcile is retried (after the
	// server's Retry-After when it sent one, otherwise with
	// controller-runtime's backoff), and the resource is Reconciling.
	Retry Handling = iota
	// Wait means the operator waits for something outside it that will
	// happen without a person (a job that runs, an endpoint that starts):
	// Reconciling=True, no error, and a requeue only when RequeueAfter says.
	Wait
	// Stall means progress stopped until a person changes something:
	// Stalled=True, a Warning Event and a log line once per change, no
	// error (so no stack trace per retry).
	Stall
)

func (h Handling) String() string {
	switch h {
	case Wait:
		return "wait"
	case Stall:
		return "stall"
	}
	return "retry"
}

// Error is a step's outcome that stops the remaining steps. Reason and
// Message go to the conditions; Err, when set, is the cause that is logged
// and (for Retry) returned to controller-runtime.
type Error struct {
	Handling Handling
	// Reason is a condition reason from api/v1alpha1.
	Reason string
	// Message tells a person what happens or what to do.
	Message string
	// Err is the underlying cause, if any.
	Err error
	// RequeueAfter asks for another reconcile after this long; zero leaves
	// it to watches (Wait, Stall) or to the backoff (Retry).
	RequeueAfter time.Duration
	// Condition, when set, is a sub-condition (Deployed, OutputReady) that
	// the same reason and message set False.
	Condition string
	// Quiet suppresses the Warning Event of a stall, for steps that emit a
	// more specific Event of their own.
	Quiet bool
}

// Error names the reason and the cause (or, without a cause, the message).
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Reason, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Reason, e.Message)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Stalling reports a problem only a person can fix.
func Stalling(reason, message string) *Error {
	return &Error{Handling: Stall, Reason: reason, Message: message}
}

// Waiting reports that the resource waits for something that will happen
// on its own; after is when to look again (zero: when a watch says so).
func Waiting(reason, message string, after time.Duration) *Error {
	return &Error{Handling: Wait, Reason: reason, Message: message, RequeueAfter: after}
}

// Retrying reports a transient failure with its cause.
func Retrying(reason, message string, err error) *Error {
	return &Error{Handling: Retry, Reason: reason, Message: message, Err: err, RequeueAfter: RetryAfter(err)}
}

// On makes the error also set sub-condition cond False.
func (e *Error) On(cond string) *Error { e.Condition = cond; return e }

// After sets when to reconcile again.
func (e *Error) After(d time.Duration) *Error { e.RequeueAfter = d; return e }

// Silent suppresses the stall's Warning Event.
func (e *Error) Silent() *Error { e.Quiet = true; return e }

// As returns err as an *Error when it is one (or wraps one).
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// AccountRecheck is how often a resource stalled on an account problem
// (a rejected key, the spending limit) looks again: the fix happens outside
// the cluster, where no watch can see it.
const AccountRecheck = 5 * time.Minute

// APIFailure classifies a failed Together call made while doing (a phrase
// such as "creating the job of attempt 2"). A rejected key (401) and the
// spending limit (402) stall every kind the same way; anything else is
// retried, after the server's Retry-After when it sent one. keySource says
// where the manager's key came from, so that the message names what to fix.
func APIFailure(err error, doing, keySource string) *Error {
	switch {
	case together.IsUnauthorized(err):
		if keySource == "" {
			keySource = "the manager's configuration"
		}
		fix := "set a valid key there and restart the manager"
		if strings.HasPrefix(keySource, "Secret ") {
			// A namespace's own key is read on every reconcile.
			fix = "put a valid key there; it is read again without a restart"
		}
		e := Stalling(togetherv1.ReasonUnauthorized, fmt.Sprintf(
			"Together rejected the API key (from %s) while %s; %s.", keySource, doing, fix))
		e.Err, e.RequeueAfter = err, AccountRecheck
		return e
	case together.IsQuotaExceeded(err):
		e := Stalling(togetherv1.ReasonQuotaExceeded, fmt.Sprintf(
			"Together refused the request while %s because the account's spending limit is reached; raise the limit at together.ai, and the operator retries.", doing))
		e.Err, e.RequeueAfter = err, AccountRecheck
		return e
	}
	return Retrying(togetherv1.ReasonAPIError, fmt.Sprintf("Together answered with an error while %s; retrying: %v", doing, err), fmt.Errorf("%s: %w", doing, err))
}

// RetryAfter is the server's Retry-After carried by a Together error, or 0.
func RetryAfter(err error) time.Duration {
	var api *together.APIError
	if errors.As(err, &api) && api.RetryAfter > 0 {
		return api.RetryAfter
	}
	return 0
}
