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
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/reconcile"
	"github.com/together-operator/together-operator/internal/together"
)

// A fine-tune's dedicated endpoint goes through Together's v2 Dedicated
// Model Inference API (POST /v1/endpoints answers 403
// endpoints_v1_create_access_disabled). Its parts: the project (from
// whoami), the fine-tune's registry model (model_object_id), a config
// revision for the hardware asked for, an endpoint, one deployment per
// attempt, and that deployment in the endpoint's traffic split.
//
// Together has no idempotency keys and v2 endpoints carry no tags, so the
// operator names what it creates after the resource: the endpoint
// <prefix>-<tag> and the deployment ft-<tag>-<attempt>, where tag derives
// from the resource's UID. Names are unique within a project (endpoints) and
// an endpoint (deployments), so after a lost status write the next
// reconcile finds its own endpoint and deployment by name and adopts them
// instead of paying for second ones, and on deletion it touches only names
// carrying its tag.

// ftEndpointStepTimeout bounds all Together calls of one endpoint step, on
// top of the client's own per-call deadline.
const ftEndpointStepTimeout = 2 * time.Minute

// endpointTag is the resource's mark on what it creates: 8 hex characters of
// a hash of its UID.
func endpointTag(ft *togetherv1.TogetherFineTune) string {
	h := sha256.Sum256([]byte(ft.UID))
	return hex.EncodeToString(h[:4])
}

// endpointName is the bare name of the resource's endpoint: the prefix (or
// the resource's name made DNS-label safe and shortened) and the tag.
func endpointName(ft *togetherv1.TogetherFineTune) string {
	prefix := ""
	if e := ft.Spec.Deploy.Endpoint; e != nil {
		prefix = e.NamePrefix
	}
	if prefix == "" {
		prefix = strings.Map(func(r rune) rune {
			if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
				return r
			}
			return '-'
		}, strings.ToLower(ft.Name))
		if len(prefix) > 40 {
			prefix = prefix[:40]
		}
		prefix = strings.Trim(prefix, "-")
		if prefix == "" {
			prefix = "ft"
		}
	}
	return prefix + "-" + endpointTag(ft)
}

// deploymentNamePrefix starts the names of every deployment the resource
// creates; deploymentName adds the attempt.
func deploymentNamePrefix(ft *togetherv1.TogetherFineTune) string {
	return "ft-" + endpointTag(ft) + "-"
}

func deploymentName(ft *togetherv1.TogetherFineTune) string {
	return fmt.Sprintf("%s%d", deploymentNamePrefix(ft), max(ft.Status.Attempt, 1))
}

func (r *TogetherFineTuneReconciler) endpointPollInterval() time.Duration {
	if r.EndpointPollInterval > 0 {
		return r.EndpointPollInterval
	}
	return ftEndpointPollInterval
}

// reconcileEndpoint creates (or adopts by name) the endpoint and this
// attempt's deployment, routes traffic to it and follows it to READY; it
// returns a Waiting error while the deployment is not ready. Each part is recorded in status.endpoint as
// soon as it is known, and each is looked up by name before it is created.
func (r *TogetherFineTuneReconciler) reconcileEndpoint(ctx context.Context, ft *togetherv1.TogetherFineTune) error {
	ctx, cancel := context.WithTimeout(ctx, ftEndpointStepTimeout)
	defer cancel()
	st := &ft.Status
	spec := ft.Spec.Deploy.Endpoint
	if st.Endpoint == nil || st.Endpoint.IsV1() {
		st.Endpoint = &togetherv1.EndpointStatus{}
	}
	es := st.Endpoint

	if es.ProjectID == "" {
		who, err := r.API.Whoami(ctx)
		if err != nil {
			return r.apiFailure(err, "reading the API key's project (GET /v1/whoami)")
		}
		es.ProjectID = who.ProjectID
	}
	p := es.ProjectID

	if es.Model == "" {
		job, err := r.API.GetFineTune(ctx, st.JobID)
		if err != nil {
			return r.apiFailure(err, "reading job "+st.JobID+" for its registry model")
		}
		switch {
		case job.ModelObjectID != "":
			es.Model = together.ModelResource(p, job.ModelObjectID, job.ModelObjectRevisionID)
		case job.AdapterObjectID != "":
			es.Model = together.ModelResource(p, job.AdapterObjectID, job.AdapterObjectRevisionID)
		default:
			return reconcile.Waiting(togetherv1.ReasonWaitingForModelObject, fmt.Sprintf(
				"Job %s completed but Together names no registry model for it yet (model_object_id); the operator checks again shortly.", st.JobID), ftRecheckInterval).On(togetherv1.DeployedCondition)
		}
	}

	if es.Config == "" {
		ref := modelWithoutRevision(es.Model)
		cfgs, err := r.API.ListV2Configs(ctx, p, ref)
		if err != nil {
			return r.apiFailure(err, "listing config revisions for "+ref)
		}
		cfg, problem := selectConfig(cfgs, spec, ref)
		if cfg == nil {
			return reconcile.Stalling(togetherv1.ReasonNoMatchingConfig, problem).On(togetherv1.DeployedCondition)
		}
		es.Config = cfg.ResourceName()
	}

	if es.ID == "" {
		ep, err := r.ensureV2Endpoint(ctx, ft, p)
		if err != nil {
			return err
		}
		es.ID, es.Name = ep.ID, ep.Name
	}

	if es.DeploymentID == "" {
		dep, err := r.ensureV2Deployment(ctx, ft, p)
		if err != nil {
			return err
		}
		es.DeploymentID, es.DeploymentName = dep.ID, dep.Name
		es.State, es.Hardware, es.Routed = dep.Status.State, dep.Hardware, false
	}

	if !es.Routed {
		ep, err := r.API.GetV2Endpoint(ctx, p, es.ID)
		if err != nil {
			return r.apiFailure(err, "reading endpoint "+es.ID)
		}
		if w, _ := ep.Weight(es.DeploymentID); w <= 0 {
			split := slices.DeleteFunc(slices.Clone(ep.TrafficSplit), func(t together.TrafficSplitEntry) bool { return t.DeploymentID == es.DeploymentID })
			split = append(split, together.TrafficSplitEntry{DeploymentID: es.DeploymentID, Weight: 1})
			if _, err := r.API.SetV2TrafficSplit(ctx, p, es.ID, ep.Etag, split); err != nil {
				if together.IsConflict(err) { // the endpoint changed since it was read
					return reconcile.Retrying(togetherv1.ReasonAPIError, "Endpoint "+es.Name+" changed while its traffic split was being set; reading it again.", err)
				}
				return r.apiFailure(err, "putting deployment "+es.DeploymentID+" in the traffic split of endpoint "+es.Name)
			}
			r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonEndpointRouted, "Deploy",
				"Put deployment %s in the traffic split of endpoint %s.", es.DeploymentName, es.Name)
		}
		es.Routed = true
	}

	if es.State != together.DeploymentReady {
		dep, err := r.API.GetV2Deployment(ctx, p, es.ID, es.DeploymentID)
		if err != nil {
			return r.apiFailure(err, "reading deployment "+es.DeploymentID)
		}
		es.State, es.Hardware = dep.Status.State, dep.Hardware
		switch dep.Status.State {
		case together.DeploymentReady:
		case together.DeploymentFailed:
			return reconcile.Stalling(togetherv1.ReasonEndpointFailed, fmt.Sprintf(
				"Deployment %s of endpoint %s failed: %s. Inspect it in the Together console; deleting this resource deletes the deployment and the endpoint.", es.DeploymentName, es.Name, dep.Status.Message)).On(togetherv1.DeployedCondition)
		case together.DeploymentStopped, together.DeploymentStopping:
			return reconcile.Stalling(togetherv1.ReasonEndpointFailed, fmt.Sprintf(
				"Deployment %s of endpoint %s is %s: it was stopped outside the operator. Scale it back up in Together, or delete this resource to remove it.", es.DeploymentName, es.Name, dep.Status.State)).On(togetherv1.DeployedCondition)
		default:
			msg := fmt.Sprintf("Deployment %s of endpoint %s is %s", es.DeploymentName, es.Name, dep.Status.State)
			if dep.Status.Message != "" {
				msg += " (" + dep.Status.Message + ")"
			}
			return reconcile.Waiting(togetherv1.ReasonWaitingForDeploymentReady, msg+"; waiting for DEPLOYMENT_STATE_READY. First provisioning can take many minutes.",
				r.endpointPollInterval()).On(togetherv1.DeployedCondition)
		}
	}
	return nil
}

// ensureV2Endpoint finds the resource's endpoint by name or creates it.
func (r *TogetherFineTuneReconciler) ensureV2Endpoint(ctx context.Context, ft *togetherv1.TogetherFineTune, p string) (*together.V2Endpoint, error) {
	name := endpointName(ft)
	found, err := r.API.FindV2EndpointByName(ctx, p, name)
	if err != nil {
		return nil, r.apiFailure(err, "looking for endpoint "+name)
	}
	if found != nil {
		r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonEndpointAdopted, "Deploy",
			"Found endpoint %s (%s), named after this resource, and adopted it instead of creating another.", found.Name, found.ID)
		return found, nil
	}
	ep, err := r.API.CreateV2Endpoint(ctx, p, together.CreateV2EndpointRequest{Name: name, Visibility: together.VisibilityPrivate})
	if err != nil {
		if together.IsConflict(err) { // created meanwhile: the next reconcile adopts it
			return nil, reconcile.Retrying(togetherv1.ReasonAPIError, "Endpoint "+name+" appeared while it was being created; the next attempt adopts it.", err)
		}
		return nil, r.endpointRefused(err, "endpoint "+name)
	}
	r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonEndpointCreated, "Deploy", "Created dedicated endpoint %s (%s).", ep.Name, ep.ID)
	return ep, nil
}

// ensureV2Deployment finds this attempt's deployment under the endpoint by
// name or creates it with the chosen config and the spec's bounds.
func (r *TogetherFineTuneReconciler) ensureV2Deployment(ctx context.Context, ft *togetherv1.TogetherFineTune, p string) (*together.V2Deployment, error) {
	es, spec := ft.Status.Endpoint, ft.Spec.Deploy.Endpoint
	name := deploymentName(ft)
	deps, err := r.API.ListV2Deployments(ctx, p, es.ID)
	if err != nil {
		return nil, r.apiFailure(err, "listing the deployments of endpoint "+es.Name)
	}
	for i := range deps {
		if deps[i].BareName() == name {
			r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonEndpointDeploymentAdopted, "Deploy",
				"Found deployment %s (%s), named after this resource, and adopted it instead of creating another.", deps[i].Name, deps[i].ID)
			return &deps[i], nil
		}
	}
	dep, err := r.API.CreateV2Deployment(ctx, p, es.ID, together.CreateV2DeploymentRequest{
		Name: name, Model: es.Model, Config: es.Config,
		Autoscaling: together.V2Autoscaling{MinReplicas: int64(spec.MinReplicas), MaxReplicas: int64(spec.MaxReplicas)},
	})
	if err != nil {
		if together.IsConflict(err) {
			return nil, reconcile.Retrying(togetherv1.ReasonAPIError, "Deployment "+name+" appeared while it was being created; the next attempt adopts it.", err)
		}
		return nil, r.endpointRefused(err, "deployment "+name+" of model "+es.Model)
	}
	r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonEndpointDeploymentCreated, "Deploy",
		"Created deployment %s of %s on %s (config %s, %d-%d replicas).", dep.Name, es.Model, dep.Hardware, es.Config, spec.MinReplicas, spec.MaxReplicas)
	return dep, nil
}

// endpointRefused reports a create that Together refused. A 403 says what
// it is — the project may not do this (for v1, creation is retired) — and
// is not blamed on the spec; a 400/422 is a problem with what was asked.
func (r *TogetherFineTuneReconciler) endpointRefused(err error, what string) error {
	code := ""
	if e := (*together.APIError)(nil); errors.As(err, &e) {
		code = e.Code
	}
	switch {
	case together.IsV1EndpointCreateDisabled(err):
		return reconcile.Stalling(togetherv1.ReasonEndpointForbidden, fmt.Sprintf(
			"Together refused to create %s: v1 endpoint creation is retired (HTTP 403 %s). This is not a problem in spec.deploy.endpoint; the operator creates endpoints through v2.", what, together.CodeV1EndpointCreateDisabled)).On(togetherv1.DeployedCondition)
	case together.IsForbidden(err):
		return reconcile.Stalling(togetherv1.ReasonEndpointForbidden, fmt.Sprintf(
			"Together refused to create %s with HTTP 403, code %q (%v). The API key's project is not allowed to do this; this is not a problem in spec.deploy.endpoint. Ask Together to enable Dedicated Model Inference for the project, or use a key of a project that has it.", what, code, err)).On(togetherv1.DeployedCondition)
	case together.IsInvalidRequest(err):
		return reconcile.Stalling(togetherv1.ReasonEndpointFailed, fmt.Sprintf("Together refused to create %s: %v. Check spec.deploy.endpoint.", what, err)).On(togetherv1.DeployedCondition)
	}
	return r.apiFailure(err, "creating "+what)
}

// selectConfig picks the config revision for spec among those Together
// lists for the model: the pinned one, or the one whose accelerator
// selectors match spec.hardware (and optimization, if set). Several
// matches prefer the balanced profile, then the lowest ID, so the choice is
// stable. problem explains a miss in words a person can act on.
func selectConfig(cfgs []together.V2Config, spec *togetherv1.EndpointSpec, model string) (*together.V2Config, string) {
	if len(cfgs) == 0 {
		return nil, fmt.Sprintf("Together lists no deployment config revisions for model %s, so it cannot be deployed on a dedicated endpoint (its base model may not be supported for dedicated inference). Set spec.deploy.endpoint.config to a config revision you know fits, or remove spec.deploy.endpoint.", model)
	}
	if spec.Config != "" {
		for i := range cfgs {
			if cfgs[i].ID == spec.Config || cfgs[i].ResourceName() == spec.Config {
				return &cfgs[i], ""
			}
		}
		return nil, fmt.Sprintf("Config %s is not among the config revisions Together lists for model %s (%s); fix spec.deploy.endpoint.config.", spec.Config, model, describeConfigs(cfgs))
	}
	count, typ, ok := spec.Accelerator()
	if !ok {
		return nil, fmt.Sprintf("spec.deploy.endpoint.hardware %q is not <count>x<accelerator type>; the model's configs offer %s.", spec.Hardware, describeConfigs(cfgs))
	}
	var match []*together.V2Config
	for i := range cfgs {
		c := &cfgs[i]
		if c.Selector(together.SelectorAcceleratorType) == typ && c.Selector(together.SelectorAcceleratorCount) == count &&
			(spec.Optimization == "" || c.Selector(together.SelectorOptimization) == spec.Optimization) {
			match = append(match, c)
		}
	}
	if len(match) == 0 {
		want := spec.Hardware
		if spec.Optimization != "" {
			want += " (" + spec.Optimization + ")"
		}
		return nil, fmt.Sprintf("No config revision for model %s runs on %s; the model's configs offer %s. Change spec.deploy.endpoint.hardware or optimization.", model, want, describeConfigs(cfgs))
	}
	slices.SortFunc(match, func(a, b *together.V2Config) int {
		ab, bb := a.Selector(together.SelectorOptimization) == "balanced", b.Selector(together.SelectorOptimization) == "balanced"
		if ab != bb {
			if ab {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return match[0], ""
}

// describeConfigs lists configs as hardware (optimization) config-id.
func describeConfigs(cfgs []together.V2Config) string {
	var parts []string
	for i := range cfgs {
		c := &cfgs[i]
		s := c.Selector(together.SelectorAcceleratorCount) + "x" + c.Selector(together.SelectorAcceleratorType)
		if o := c.Selector(together.SelectorOptimization); o != "" {
			s += " (" + o + ")"
		}
		parts = append(parts, s+" "+c.ID)
	}
	return strings.Join(parts, ", ")
}

// modelWithoutRevision drops /revisions/{rv}: configs are listed by model.
func modelWithoutRevision(m string) string {
	if i := strings.Index(m, "/revisions/"); i >= 0 {
		return m[:i]
	}
	return m
}

// deleteDedicatedEndpoint removes what the resource created, in the order
// Together requires (GO betaendpoint*.go Delete; SK api-reference.md,
// Delete Resources): each of its deployments out of the traffic split and
// scaled to 0/0, deleted once STOPPED, then the endpoint once it holds no
// deployment. Deployments a person added to the endpoint are left alone,
// and so is the endpoint then. It returns a Waiting error while a
// deployment is still stopping. A v1 endpoint recorded before v2 is deleted
// through v1.
func (r *TogetherFineTuneReconciler) deleteDedicatedEndpoint(ctx context.Context, ft *togetherv1.TogetherFineTune) error {
	ctx, cancel := context.WithTimeout(ctx, ftEndpointStepTimeout)
	defer cancel()
	es := ft.Status.Endpoint
	if es.IsV1() {
		if err := r.API.DeleteEndpoint(ctx, es.ID); err != nil && !together.IsNotFound(err) {
			return r.apiFailure(err, fmt.Sprintf("deleting v1 endpoint %s", es.ID))
		}
		r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonEndpointDeleted, "Delete", "Deleted dedicated endpoint %s.", es.Name)
		return nil
	}
	if (es == nil || es.ID == "") && (ft.Spec.Deploy == nil || ft.Spec.Deploy.Endpoint == nil) {
		return nil
	}
	p := ""
	if es != nil {
		p = es.ProjectID
	}
	if p == "" {
		who, err := r.API.Whoami(ctx)
		if err != nil {
			return r.apiFailure(err, "reading the API key's project")
		}
		p = who.ProjectID
	}
	var ep *together.V2Endpoint
	var err error
	if es != nil && es.ID != "" {
		if ep, err = r.API.GetV2Endpoint(ctx, p, es.ID); together.IsNotFound(err) {
			return nil
		}
	} else { // created, but the status write recording it was lost
		ep, err = r.API.FindV2EndpointByName(ctx, p, endpointName(ft))
	}
	if err != nil {
		return r.apiFailure(err, "reading the dedicated endpoint")
	}
	if ep == nil {
		return nil
	}
	deps, err := r.API.ListV2Deployments(ctx, p, ep.ID)
	if err != nil {
		return r.apiFailure(err, fmt.Sprintf("listing the deployments of endpoint %s", ep.Name))
	}
	prefix := deploymentNamePrefix(ft)
	var foreign []string
	pending := 0
	for i := range deps {
		d := &deps[i]
		if !strings.HasPrefix(d.BareName(), prefix) {
			foreign = append(foreign, d.Name)
			continue
		}
		if w, ok := ep.Weight(d.ID); ok && w > 0 {
			// Weight 0 takes a deployment out of the split (GO
			// EndpointTrafficSplitEntry); the others keep theirs.
			split := slices.Clone(ep.TrafficSplit)
			for j := range split {
				if split[j].DeploymentID == d.ID {
					split[j].Weight = 0
				}
			}
			if ep, err = r.API.SetV2TrafficSplit(ctx, p, ep.ID, ep.Etag, split); err != nil {
				return r.apiFailure(err, fmt.Sprintf("taking deployment %s out of the traffic split", d.Name))
			}
		}
		switch {
		case d.Status.State == together.DeploymentStopped:
			if err := r.API.DeleteV2Deployment(ctx, p, ep.ID, d.ID); err != nil && !together.IsNotFound(err) {
				return r.apiFailure(err, fmt.Sprintf("deleting deployment %s", d.Name))
			}
			r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonEndpointDeploymentDeleted, "Delete", "Deleted deployment %s.", d.Name)
		case d.Autoscaling.MinReplicas != 0 || d.Autoscaling.MaxReplicas != 0:
			if _, err := r.API.ScaleV2Deployment(ctx, p, ep.ID, d.ID, 0, 0); err != nil {
				return r.apiFailure(err, fmt.Sprintf("stopping deployment %s", d.Name))
			}
			pending++
		default:
			pending++ // stopping
		}
	}
	if pending > 0 {
		return reconcile.Waiting(togetherv1.ReasonDeletingEndpoint, fmt.Sprintf(
			"Deleting: waiting for %d deployment(s) of endpoint %s to stop before deleting them and the endpoint.", pending, ep.Name), r.endpointPollInterval())
	}
	if len(foreign) > 0 {
		r.Recorder.Eventf(ft, nil, togetherv1.EventTypeWarning, togetherv1.EventReasonEndpointKept, "Delete",
			"Kept endpoint %s: it holds deployments the operator did not create (%s). Delete them and the endpoint in Together when they are no longer needed.", ep.Name, strings.Join(foreign, ", "))
		return nil
	}
	if err := r.API.DeleteV2Endpoint(ctx, p, ep.ID); err != nil && !together.IsNotFound(err) {
		return r.apiFailure(err, fmt.Sprintf("deleting endpoint %s", ep.Name))
	}
	r.Recorder.Eventf(ft, nil, togetherv1.EventTypeNormal, togetherv1.EventReasonEndpointDeleted, "Delete", "Deleted dedicated endpoint %s.", ep.Name)
	return nil
}
