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

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/reconcile"
	"github.com/together-operator/together-operator/internal/workload"
)

// This file holds what the fine-tune knows about its Deployment target
// before and after deploying: whether the target can take the model (checked
// before anything is paid for, and again before the patch), who holds it,
// and whether this fine-tune still holds it once its model is out.
//
// One fine-tune at a time holds a container's env var: the Deployment's
// together.ai/deployed-by.<container>.<env> annotation names it. Another
// fine-tune is refused (DeployTargetHeld) unless its spec.deploy.takeOver is
// set; the holder then reports Deployed=False, DeployTargetLost.

// deployTarget is the Deployment env var spec.deploy.deployment names, as
// read now.
type deployTarget struct {
	dep *appsv1.Deployment
	// ci and ei index the container and its env var (-1: not there yet,
	// the patch appends it).
	ci, ei int
	// container and env are the resolved names.
	container, env string
	// holder is another fine-tune that holds the env var and still targets
	// it; empty when the env var is free or this fine-tune's.
	holder string
	// recorded is the holder the annotation names, even a stale one.
	recorded string
}

// inspectTarget reads the Deployment of spec.deploy.deployment and decides
// whether ft may write its model there. It returns the target and nil when
// it may (also when another fine-tune holds it and spec.deploy.takeOver is
// set: target.holder names it), or a stall that says what is wrong, on
// DeployTargetReady. Other errors are the API server's.
func (r *TogetherFineTuneReconciler) inspectTarget(ctx context.Context, ft *togetherv1.TogetherFineTune) (*deployTarget, error) {
	t := ft.Spec.Deploy.Deployment
	notReady := func(reason, msg string) error {
		// No timer: the Deployment's metadata watch and holderChanges wake
		// the fine-tune when any of this can have changed.
		return reconcile.Stalling(reason, msg).On(togetherv1.DeployTargetReadyCondition)
	}
	dep := &appsv1.Deployment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ft.Namespace, Name: t.Name}, dep); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, notReady(togetherv1.ReasonDeploymentNotFound, fmt.Sprintf(
				"Deployment %q does not exist in namespace %q; create it or fix spec.deploy.deployment.name.", t.Name, ft.Namespace))
		}
		return nil, fmt.Errorf("reading Deployment %s/%s: %w", ft.Namespace, t.Name, err)
	}
	tg := &deployTarget{dep: dep, ci: -1, ei: -1, env: t.Env}
	if tg.env == "" {
		tg.env = ftDefaultModelEnv
	}
	containers := dep.Spec.Template.Spec.Containers
	for i := range containers {
		if t.Container == "" || containers[i].Name == t.Container {
			tg.ci = i
			break
		}
	}
	if tg.ci < 0 {
		return nil, notReady(togetherv1.ReasonContainerNotFound, fmt.Sprintf(
			"Deployment %q has no container %q; fix spec.deploy.deployment.container.", t.Name, t.Container))
	}
	c := containers[tg.ci]
	tg.container = c.Name
	for i := range c.Env {
		if c.Env[i].Name == tg.env {
			tg.ei = i
		}
	}
	if tg.ei >= 0 && c.Env[tg.ei].ValueFrom != nil {
		return nil, notReady(togetherv1.ReasonEnvVarFromSource, fmt.Sprintf(
			"Env var %s of container %s in Deployment %q takes its value from a source; make it a plain value so the operator can set it.", tg.env, c.Name, t.Name))
	}
	tg.recorded = dep.Annotations[togetherv1.DeployedByAnnotation(tg.container, tg.env)]
	holds, err := r.stillHolds(ctx, ft.Namespace, tg.recorded, ft.Name, t.Name, tg.container, tg.env)
	if err != nil {
		return nil, err
	}
	if holds {
		tg.holder = tg.recorded
		if !ft.Spec.Deploy.TakeOver {
			return tg, notReady(togetherv1.ReasonDeployTargetHeld, fmt.Sprintf(
				"Env var %s of container %s in Deployment %q is held by fine-tune %q (annotation %s). Set spec.deploy.takeOver: true to replace its model when this one succeeds, or point spec.deploy.deployment at another target.",
				tg.env, tg.container, t.Name, tg.holder, togetherv1.DeployedByAnnotation(tg.container, tg.env)))
		}
	}
	return tg, nil
}

// stillHolds reports whether fine-tune holder (named by a deployed-by
// annotation) is another fine-tune than self that exists, is not being
// deleted, and still targets this env var. A holder that is gone or that now
// targets something else holds nothing: its annotation is stale.
func (r *TogetherFineTuneReconciler) stillHolds(ctx context.Context, ns, holder, self, dep, container, env string) (bool, error) {
	if holder == "" || holder == self {
		return false, nil
	}
	other := &togetherv1.TogetherFineTune{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: holder}, other); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading fine-tune %s/%s, which holds Deployment %s: %w", ns, holder, dep, err)
	}
	if !other.DeletionTimestamp.IsZero() || other.Spec.Deploy == nil || other.Spec.Deploy.Deployment == nil {
		return false, nil
	}
	ot := other.Spec.Deploy.Deployment
	oenv := ot.Env
	if oenv == "" {
		oenv = ftDefaultModelEnv
	}
	return ot.Name == dep && (ot.Container == "" || ot.Container == container) && oenv == env, nil
}

// reconcileTarget checks spec.deploy.deployment before the current attempt's
// model is deployed, so that a wrong name or a held env var is known before
// training is paid for. It owns DeployTargetReady. When a job is about to be
// submitted (the first attempt, or a retry after a failure) and
// spec.deploy.onTargetNotReady is Wait, a target that is not ready stops the
// reconcile here (a stall, with one Warning Event);
// otherwise the problem is reported (condition and one Warning Event per
// change) and the job goes on. Once this attempt's model is deployed the
// condition goes: Deployed says the rest.
func (r *TogetherFineTuneReconciler) reconcileTarget(ctx context.Context, ft *togetherv1.TogetherFineTune, s *scope) (ctrl.Result, error) {
	st := &ft.Status
	d := ft.Spec.Deploy
	if d == nil || d.Deployment == nil || (st.DeployedModel != "" && st.DeployedAttempt == st.Attempt) {
		apimeta.RemoveStatusCondition(&st.Conditions, togetherv1.DeployTargetReadyCondition)
		return ctrl.Result{}, nil
	}
	tg, err := r.inspectTarget(ctx, ft)
	e, isStall := reconcile.As(err)
	if err != nil && !isStall {
		return ctrl.Result{}, err
	}
	if err == nil {
		msg := fmt.Sprintf("Env var %s of container %s in Deployment %q can take the model.", tg.env, tg.container, tg.dep.Name)
		if tg.holder != "" {
			msg = fmt.Sprintf("Env var %s of container %s in Deployment %q is held by fine-tune %q; spec.deploy.takeOver is set, so this fine-tune's model replaces it when it succeeds.", tg.env, tg.container, tg.dep.Name, tg.holder)
		}
		reconcile.SetCondition(&st.Conditions, ft.Generation, togetherv1.DeployTargetReadyCondition, metav1.ConditionTrue, togetherv1.ReasonDeployTargetReady, msg)
		return ctrl.Result{}, nil
	}
	// About to pay: the first attempt, or a retry after a failed one. (A
	// submission already in flight is finished whatever the target says.)
	first := ft.Spec.Training != nil && st.JobID == "" && st.Submission == nil
	retry := ft.Spec.Training != nil && st.Submission == nil && st.Phase == togetherv1.FineTuneFailed && st.Attempt < ftMaxAttempts(ft)
	if (first || retry) && d.OnTargetNotReady != togetherv1.TargetNotReadySubmit {
		what := "Nothing was submitted"
		if retry {
			what = fmt.Sprintf("Attempt %d was not submitted", st.Attempt+1)
		}
		e.Message = what + ": " + e.Message + " The operator submits as soon as the target is ready; set spec.deploy.onTargetNotReady: Submit to train anyway."
		return ctrl.Result{}, e
	}
	// Training goes on (or is not ours to start): report, warn once per
	// change; the watches wake the fine-tune when the target changes, and
	// the deploy step looks again before deploying.
	// A copy: SetCondition below changes the element in place.
	prev := findCondition(st.Conditions, togetherv1.DeployTargetReadyCondition)
	reconcile.SetCondition(&st.Conditions, ft.Generation, togetherv1.DeployTargetReadyCondition, metav1.ConditionFalse, e.Reason, e.Message)
	// A succeeded job's deploy step stalls on the same problem and warns
	// itself.
	if st.Phase != togetherv1.FineTuneSucceeded && (prev == nil || prev.Status != metav1.ConditionFalse || prev.Reason != e.Reason || prev.Message != e.Message) {
		reason, msg := e.Reason, e.Message
		s.afterWrite(func() {
			r.Recorder.Eventf(ft, nil, togetherv1.EventTypeWarning, reason, "CheckTarget", "%s The model will be deployed once the target is ready.", msg)
		})
	}
	return ctrl.Result{}, nil
}

// checkStillDeployed looks, for a fine-tune whose model is out, whether the
// Deployment env var still holds it. When another fine-tune took it over
// (or it was changed by hand), Deployed turns False with DeployTargetLost and
// one Warning Event; this fine-tune does not take it back (a model is
// deployed once per attempt), so two fine-tunes never fight over it.
func (r *TogetherFineTuneReconciler) checkStillDeployed(ctx context.Context, ft *togetherv1.TogetherFineTune, s *scope) error {
	st := &ft.Status
	if st.Deployment == nil || ft.Spec.Deploy == nil || ft.Spec.Deploy.Deployment == nil {
		return nil
	}
	dep := &appsv1.Deployment{}
	err := r.Get(ctx, types.NamespacedName{Namespace: ft.Namespace, Name: st.Deployment.Name}, dep)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading Deployment %s/%s: %w", ft.Namespace, st.Deployment.Name, err)
	}
	env := ft.Spec.Deploy.Deployment.Env
	if env == "" {
		env = ftDefaultModelEnv
	}
	var lost string
	switch {
	case apierrors.IsNotFound(err):
		lost = fmt.Sprintf("Deployment %q was deleted; model %s is no longer deployed there.", st.Deployment.Name, st.DeployedModel)
	default:
		holder := dep.Annotations[togetherv1.DeployedByAnnotation(st.Deployment.Container, env)]
		value, found := "", false
		for _, c := range dep.Spec.Template.Spec.Containers {
			if c.Name != st.Deployment.Container {
				continue
			}
			for _, e := range c.Env {
				if e.Name == env && e.ValueFrom == nil {
					value, found = e.Value, true
				}
			}
		}
		switch {
		case holder != "" && holder != ft.Name:
			lost = fmt.Sprintf("Fine-tune %q took over env var %s of container %s in Deployment %q; model %s of this fine-tune is no longer deployed there.", holder, env, st.Deployment.Container, st.Deployment.Name, st.DeployedModel)
		case !found || value != st.DeployedModel:
			lost = fmt.Sprintf("Env var %s of container %s in Deployment %q now holds %q, changed outside the operator; model %s of this fine-tune is no longer deployed there.", env, st.Deployment.Container, st.Deployment.Name, value, st.DeployedModel)
		}
	}
	prev := findCondition(st.Conditions, togetherv1.DeployedCondition)
	if lost == "" {
		if prev != nil && prev.Reason == togetherv1.ReasonDeployTargetLost {
			// The model is back (restored by hand, or the Deployment
			// recreated with it).
			reconcile.SetCondition(&st.Conditions, ft.Generation, togetherv1.DeployedCondition, metav1.ConditionTrue, togetherv1.ReasonDeployed, ftDeployedMessage(ft))
		}
		return nil
	}
	reconcile.SetCondition(&st.Conditions, ft.Generation, togetherv1.DeployedCondition, metav1.ConditionFalse, togetherv1.ReasonDeployTargetLost, lost)
	if prev == nil || prev.Reason != togetherv1.ReasonDeployTargetLost || prev.Message != lost {
		s.afterWrite(func() {
			r.Recorder.Eventf(ft, nil, togetherv1.EventTypeWarning, togetherv1.ReasonDeployTargetLost, "Deploy", "%s", lost)
		})
	}
	return nil
}

// releaseTarget removes this fine-tune's deployed-by annotation from its
// Deployment when the fine-tune is deleted, so that the env var is free for
// another one. The env var keeps its value (deleting a fine-tune does not
// roll back a Deployment). A "test" operation makes the removal a no-op
// failure when another fine-tune took it over meanwhile.
func (r *TogetherFineTuneReconciler) releaseTarget(ctx context.Context, ft *togetherv1.TogetherFineTune) error {
	st := ft.Status.Deployment
	if st == nil || ft.Spec.Deploy == nil || ft.Spec.Deploy.Deployment == nil {
		return nil
	}
	env := ft.Spec.Deploy.Deployment.Env
	if env == "" {
		env = ftDefaultModelEnv
	}
	key := togetherv1.DeployedByAnnotation(st.Container, env)
	dep := &appsv1.Deployment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ft.Namespace, Name: st.Name}, dep); err != nil {
		return client.IgnoreNotFound(err)
	}
	if dep.Annotations[key] != ft.Name {
		return nil
	}
	body, err := workload.RemoveAnnotation(key, ft.Name)
	if err != nil {
		return err
	}
	if err := workload.Apply(ctx, r.Client, dep, body); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing env var %s of container %s in Deployment %s/%s: %w", env, st.Container, ft.Namespace, st.Name, err)
	}
	return nil
}

// findCondition returns a copy of condition t, or nil.
func findCondition(conds []metav1.Condition, t string) *metav1.Condition {
	if c := apimeta.FindStatusCondition(conds, t); c != nil {
		cp := *c
		return &cp
	}
	return nil
}
