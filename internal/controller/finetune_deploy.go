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

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/reconcile"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/workload"
)

// ftDefaultModelEnv is the env var used when spec.deploy.deployment.env is
// empty (the CRD defaults it too; this covers objects created without
// defaulting, e.g. in unit tests).
const ftDefaultModelEnv = "TOGETHER_MODEL"

// reconcileDeploy takes a succeeded attempt's model to spec.deploy's targets,
// once per attempt: the quality gate first, then the dedicated endpoint
// (followed until its deployment is READY, see finetune_endpoint.go), then
// the Deployment's env var — which receives the endpoint's inference name
// when both are set. It owns Deployed and says what
// Ready says once the fine-tune is done.
func (r *TogetherFineTuneReconciler) reconcileDeploy(ctx context.Context, ft *togetherv1.TogetherFineTune, s *scope) (ctrl.Result, error) {
	st := &ft.Status
	d := ft.Spec.Deploy
	if d == nil || (d.Deployment == nil && d.Endpoint == nil) {
		apimeta.RemoveStatusCondition(&st.Conditions, togetherv1.DeployedCondition)
		s.succeeded(metav1.ConditionTrue, togetherv1.ReasonSucceeded,
			fmt.Sprintf("Fine-tune job %s completed; model %s is ready to use.", st.JobID, st.OutputModel))
		return ctrl.Result{}, nil
	}
	if st.DeployedAttempt == st.Attempt && st.DeployedModel != "" {
		// This attempt's model is out already; say so only while the
		// Deployment still holds it (checkStillDeployed).
		if err := r.checkStillDeployed(ctx, ft, s); err != nil {
			return ctrl.Result{}, err
		}
		s.succeeded(metav1.ConditionTrue, togetherv1.ReasonDeployed, ftDeployedMessage(ft))
		return ctrl.Result{}, nil
	}
	if st.OutputModel == "" || (d.MaxEvalLoss != nil && st.EvalLoss == nil) {
		if err := r.completeJobFacts(ctx, ft); err != nil {
			return ctrl.Result{}, r.apiFailure(err, "reading the completed job "+st.JobID)
		}
	}
	if st.OutputModel == "" {
		return ctrl.Result{}, reconcile.Waiting(togetherv1.ReasonAPIError, fmt.Sprintf(
			"Together reports job %s as completed but names no output model; the operator checks again shortly.", st.JobID), ftOutputModelRecheck).On(togetherv1.DeployedCondition)
	}
	if max := d.MaxEvalLoss; max != nil {
		switch {
		case st.EvalLoss == nil:
			return ctrl.Result{}, reconcile.Stalling(togetherv1.ReasonQualityGateFailed, fmt.Sprintf(
				"Model %s was not deployed: its eval loss is unknown and spec.deploy.maxEvalLoss is %g. Set spec.training.nEvals and a validation file so Together reports one, or remove the gate.", st.OutputModel, *max)).On(togetherv1.DeployedCondition)
		case *st.EvalLoss > *max:
			return ctrl.Result{}, reconcile.Stalling(togetherv1.ReasonQualityGateFailed, fmt.Sprintf(
				"Model %s was not deployed: its eval loss %g is above spec.deploy.maxEvalLoss %g. Retrain with other parameters or raise the limit.", st.OutputModel, *st.EvalLoss, *max)).On(togetherv1.DeployedCondition)
		}
	}

	model := st.OutputModel
	if d.Endpoint != nil {
		if err := r.reconcileEndpoint(ctx, ft); err != nil {
			return ctrl.Result{}, err
		}
		model = st.Endpoint.Name
	}
	if d.Deployment != nil {
		if err := r.patchDeployment(ctx, ft, model); err != nil {
			return ctrl.Result{}, err
		}
	}
	st.DeployedModel, st.DeployedAttempt = model, st.Attempt
	msg := ftDeployedMessage(ft)
	reconcile.SetCondition(&st.Conditions, ft.Generation, togetherv1.DeployedCondition, metav1.ConditionTrue, togetherv1.ReasonDeployed, msg)
	s.succeeded(metav1.ConditionTrue, togetherv1.ReasonDeployed, msg)
	r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.ReasonDeployed, "Deploy", "%s", msg)
	return ctrl.Result{}, nil
}

// ftDeployedMessage says which model of which attempt is deployed where.
func ftDeployedMessage(ft *togetherv1.TogetherFineTune) string {
	return fmt.Sprintf("Model %s of attempt %d is deployed%s.", ft.Status.DeployedModel, ft.Status.DeployedAttempt, ftTargetsText(ft))
}

// completeJobFacts reads the job and its metrics once when the intake did
// not provide the output model or eval loss (an adopted job that had already
// finished, for instance).
func (r *TogetherFineTuneReconciler) completeJobFacts(ctx context.Context, ft *togetherv1.TogetherFineTune) error {
	st := &ft.Status
	if st.OutputModel == "" {
		job, err := r.API.GetFineTune(ctx, st.JobID)
		if err != nil {
			return err
		}
		st.OutputModel = job.ModelOutputName
	}
	if st.EvalLoss == nil {
		m, err := r.API.GetFineTuneMetrics(ctx, st.JobID)
		if err != nil && !together.IsNotFound(err) {
			return err
		}
		if m != nil && m.EvalLoss != nil {
			st.EvalLoss = m.EvalLoss
		}
	}
	return nil
}

func ftTargetsText(ft *togetherv1.TogetherFineTune) string {
	var parts []string
	if ep := ft.Status.Endpoint; ep != nil {
		parts = append(parts, "on dedicated endpoint "+ep.Name)
	}
	if dep := ft.Status.Deployment; dep != nil {
		parts = append(parts, fmt.Sprintf("in Deployment %s (container %s, generation %d)", dep.Name, dep.Container, dep.Generation))
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " and ")
}

// patchDeployment sets one env var of one container to model with the
// workload helper's patch (internal/workload): it touches only that entry,
// the Deployment's one rollback record (togetherv1.RollbackAnnotation) and
// the deployed-by annotation. Pinned to the resourceVersion read, the
// holder check and the write are one step: a fine-tune that claimed the env
// var meanwhile, or any concurrent edit, fails the patch and the next
// reconcile looks again.
func (r *TogetherFineTuneReconciler) patchDeployment(ctx context.Context, ft *togetherv1.TogetherFineTune, model string) error {
	t := ft.Spec.Deploy.Deployment
	// Re-checked now, just before the write: the target may have changed
	// since the check before submission (reconcileTarget).
	tg, err := r.inspectTarget(ctx, ft)
	if err != nil {
		if e, ok := reconcile.As(err); ok {
			// The model exists and cannot go out: Deployed says why.
			e.Condition = togetherv1.DeployedCondition
		}
		return err
	}
	dep, envName := tg.dep, tg.env
	w := workload.Workload{Annotations: dep.Annotations, Template: &dep.Spec.Template, ResourceVersion: dep.ResourceVersion}
	change, err := workload.SetEnv(w, tg.container, envName, model)
	if err != nil {
		return fmt.Errorf("setting env %s in Deployment %s/%s: %w", envName, ft.Namespace, t.Name, err)
	}
	rec, err := workload.Read(w)
	if err != nil {
		return fmt.Errorf("deploying model %s to Deployment %s/%s: %w", model, ft.Namespace, t.Name, err)
	}
	ownerKey := togetherv1.DeployedByAnnotation(tg.container, envName)
	previous := change.From
	if change.From == model {
		// Written before (by an earlier reconcile whose status write was
		// lost, or by an older version that recorded no holder): the
		// rollback record has the real previous value.
		if v, ok := rec.Previous(change.Path); ok {
			previous = v
		}
	}
	if change.From != model || tg.recorded != ft.Name {
		var changes []workload.Change
		if change.From != model {
			changes = []workload.Change{change}
		}
		body, err := workload.Patch(w, changes, workload.Options{PinVersion: true, Annotations: map[string]string{ownerKey: ft.Name}})
		if err != nil {
			return fmt.Errorf("building the patch of Deployment %s/%s: %w", ft.Namespace, t.Name, err)
		}
		if err := workload.Apply(ctx, r.Client, dep, body); err != nil {
			return fmt.Errorf("setting env %s of container %s in Deployment %s/%s: %w", envName, tg.container, ft.Namespace, t.Name, err)
		}
		r.Recorder.Eventf(ft, dep, togetherv1.EventTypeNormal, togetherv1.EventReasonDeploymentPatched, "Deploy",
			"Set %s of container %s in Deployment %s to %s (was %q; the rollback is recorded in annotation %s).", envName, tg.container, t.Name, model, previous, togetherv1.RollbackAnnotation)
		if tg.holder != "" {
			r.Recorder.Eventf(ft, dep, togetherv1.EventTypeNormal, togetherv1.EventReasonDeployTargetTakenOver, "Deploy",
				"Took env var %s of container %s in Deployment %s over from fine-tune %q (spec.deploy.takeOver); that fine-tune now reports Deployed=False.", envName, tg.container, t.Name, tg.holder)
		}
	}
	ft.Status.Deployment = &togetherv1.DeploymentStatus{Name: t.Name, Container: tg.container, Generation: dep.Generation, PreviousValue: previous}
	return nil
}
