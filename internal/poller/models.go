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

package poller

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/internal/workload"
	"github.com/together-operator/together-operator/pkg/push"
)

func (p *Poller) modelsDue() bool {
	every := p.ModelsInterval
	if every == 0 {
		every = time.Hour
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.lastModels.IsZero() && p.now().Sub(p.lastModels) < every {
		return false
	}
	p.lastModels = p.now()
	return true
}

// pollModels reads the v2 catalogue (GET /v2/supported-models; v1 /models
// has no deprecation field) and, in every namespace that has a
// subscription, lists its Deployments and StatefulSets once and checks them
// against every model the catalogue marks SUPPORTED_MODEL_STATUS_DEPRECATED.
// The catalogue names no replacement and no sunset, so those come from the
// subscriptions' modelReplacements: a deprecated model in use becomes a
// model.deprecated event when one is declared, and a Warning and a metric
// naming the workloads at risk otherwise. A namespace that cannot be read
// is reported and skipped; the others are still checked.
func (p *Poller) pollModels(ctx context.Context, s *Stats) error {
	logger := log.FromContext(ctx).WithName("poller")
	var subs togetherv1.TogetherWebhookSubscriptionList
	if err := p.Client.List(ctx, &subs); err != nil {
		return fmt.Errorf("listing subscriptions: %w", err)
	}
	if len(subs.Items) == 0 {
		return nil
	}
	api := p.API
	if p.Accounts != nil {
		// The catalogue is read with a subscription's own key (the Secret it
		// names, or its namespace's): the operator-wide one may serve no
		// namespace at all.
		for i := range subs.Items {
			if acc, err := p.Accounts.For(ctx, subs.Items[i].Namespace, credentials.RefOf(&subs.Items[i])); err == nil {
				api = acc.Client
				break
			}
		}
	}
	if api == nil {
		return nil
	}
	s.APICalls++
	models, err := api.ListSupportedModels(ctx)
	if err != nil {
		return fmt.Errorf("listing supported models: %w", err)
	}
	var deprecated []string
	for _, m := range models {
		if m.IsDeprecated() {
			deprecated = append(deprecated, m.ModelName())
		}
	}
	if len(deprecated) == 0 {
		return nil
	}
	byNamespace := map[string][]*togetherv1.TogetherWebhookSubscription{}
	var namespaces []string
	for i := range subs.Items {
		ns := subs.Items[i].Namespace
		if _, ok := byNamespace[ns]; !ok {
			namespaces = append(namespaces, ns)
		}
		byNamespace[ns] = append(byNamespace[ns], &subs.Items[i])
	}
	var errs []error
	for _, ns := range namespaces {
		users, err := p.workloadsUsing(ctx, ns, deprecated)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, model := range deprecated {
			if len(users[model]) == 0 {
				deprecatedInUse.DeleteLabelValues(ns, model)
				continue
			}
			sub, replacement, sunset := replacementIn(byNamespace[ns], model)
			if replacement == "" {
				p.warnAtRisk(byNamespace[ns][0], model, users[model])
				continue
			}
			deprecatedInUse.DeleteLabelValues(ns, model)
			ev := event.Event{ID: "poll:model:" + model + ":" + replacement + ":" + sunset, Type: togetherv1.EventModelDeprecated, JobID: model,
				Deprecation: &push.ModelDeprecated{ModelID: model, ReplacementModel: replacement, SunsetDate: sunset}}
			s.Events++
			res := p.Applier.Apply(ctx, ns, ev, intake.Options{Subscription: sub})
			intake.EventsTotal.WithLabelValues(string(ev.Type), "poll", string(res.Outcome)).Inc()
			switch res.Outcome {
			case lattice.Applied:
				s.Applied++
				logger.Info("deprecated model in use; migration created", "namespace", ns, "model", model, "replacement", replacement)
			case lattice.Failed:
				errs = append(errs, fmt.Errorf("creating the migration for %s in %s: %w", model, ns, res.Err))
			}
		}
	}
	return errors.Join(errs...)
}

// replacementIn finds the first subscription of a namespace that declares a
// replacement for model, with the sunset date it gives.
func replacementIn(subs []*togetherv1.TogetherWebhookSubscription, model string) (*togetherv1.TogetherWebhookSubscription, string, string) {
	for _, sub := range subs {
		for _, m := range sub.Spec.ModelReplacements {
			if m.ModelID == model && m.ReplacementModel != "" {
				return sub, m.ReplacementModel, m.SunsetDate
			}
		}
	}
	return subs[0], "", ""
}

// workloadsUsing lists, page by page and without caching, the Deployments
// and StatefulSets of a namespace once, and returns which of them name each
// of models.
func (p *Poller) workloadsUsing(ctx context.Context, namespace string, models []string) (map[string][]string, error) {
	users := map[string][]string{}
	check := func(kind, name string, annotations map[string]string, tmpl *corev1.PodTemplateSpec) {
		for _, m := range models {
			if uses(annotations, tmpl, m) {
				users[m] = append(users[m], kind+"/"+name)
			}
		}
	}
	var deps appsv1.DeploymentList
	for cont := ""; ; cont = deps.Continue {
		if err := p.Client.List(ctx, &deps, client.InNamespace(namespace), client.Limit(500), client.Continue(cont)); err != nil {
			return nil, fmt.Errorf("listing Deployments in %s: %w", namespace, err)
		}
		for i := range deps.Items {
			check("Deployment", deps.Items[i].Name, deps.Items[i].Annotations, &deps.Items[i].Spec.Template)
		}
		if deps.Continue == "" {
			break
		}
	}
	var sets appsv1.StatefulSetList
	for cont := ""; ; cont = sets.Continue {
		if err := p.Client.List(ctx, &sets, client.InNamespace(namespace), client.Limit(500), client.Continue(cont)); err != nil {
			return nil, fmt.Errorf("listing StatefulSets in %s: %w", namespace, err)
		}
		for i := range sets.Items {
			check("StatefulSet", sets.Items[i].Name, sets.Items[i].Annotations, &sets.Items[i].Spec.Template)
		}
		if sets.Continue == "" {
			break
		}
	}
	return users, nil
}

func uses(annotations map[string]string, tmpl *corev1.PodTemplateSpec, model string) bool {
	return len(workload.Scan(workload.Workload{Annotations: annotations, Template: tmpl}, workload.Target{From: model, To: model + "-replacement"})) > 0
}

// warnAtRisk raises one Warning per namespace and model (per process) and
// keeps the gauge current, since the workloads' requests will fail at sunset.
func (p *Poller) warnAtRisk(sub *togetherv1.TogetherWebhookSubscription, model string, users []string) {
	deprecatedInUse.WithLabelValues(sub.Namespace, model).Set(float64(len(users)))
	p.mu.Lock()
	if p.warned == nil {
		p.warned = map[string]bool{}
	}
	key := sub.Namespace + "/" + model
	already := p.warned[key]
	p.warned[key] = true
	p.mu.Unlock()
	if already || p.Recorder == nil {
		return
	}
	p.Recorder.Eventf(sub, nil, togetherv1.EventTypeWarning, togetherv1.ReasonDeprecatedModelInUse, "Poll",
		"Model %s is deprecated and used by %v, but no replacement is known: add it to spec.modelReplacements to migrate them", model, users)
}
