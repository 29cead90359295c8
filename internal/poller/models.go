package poller

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/deprecation"
	"github.com/together-operator/together-operator/internal/event"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/pkg/push"

	"github.com/together-operator/together-operator/internal/migration"
	"github.com/together-operator/together-operator/internal/together"
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

// pollModels reads the catalogue and, in every namespace that has a
// subscription, turns a deprecated model that a workload uses into a
// model.deprecated event when a replacement is known (from the catalogue or
// the subscription's modelReplacements), and into a Warning and a metric
// naming the workloads at risk otherwise.
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
		// The catalogue is read with a subscribing namespace's own key: the
		// operator-wide one may serve no namespace at all.
		for i := range subs.Items {
			if acc, err := p.Accounts.For(ctx, subs.Items[i].Namespace, nil); err == nil {
				api = acc.Client
				break
			}
		}
	}
	if api == nil {
		return nil
	}
	s.APICalls++
	models, err := api.ListModels(ctx)
	if err != nil {
		return fmt.Errorf("listing models: %w", err)
	}
	var deprecated []together.Model
	for _, m := range models {
		if m.Deprecated != nil {
			deprecated = append(deprecated, m)
		}
	}
	for i := range subs.Items {
		sub := &subs.Items[i]
		for _, m := range deprecated {
			users, err := p.workloadsUsing(ctx, sub.Namespace, m.ID)
			if err != nil {
				return err
			}
			if len(users) == 0 {
				deprecatedInUse.DeleteLabelValues(sub.Namespace, m.ID)
				continue
			}
			replacement := deprecation.ReplacementFor(sub, m.ID, m.Deprecated.ReplacementModel)
			if replacement == "" {
				p.warnAtRisk(sub, m.ID, users)
				continue
			}
			deprecatedInUse.DeleteLabelValues(sub.Namespace, m.ID)
			ev := event.Event{ID: "poll:model:" + m.ID + ":" + m.Deprecated.SunsetDate, Type: togetherv1.EventModelDeprecated, JobID: m.ID,
				Deprecation: &push.ModelDeprecated{ModelID: m.ID, ReplacementModel: replacement, SunsetDate: m.Deprecated.SunsetDate}}
			s.Events++
			res := p.Applier.Apply(ctx, sub.Namespace, ev, intake.Options{Subscription: sub})
			intake.EventsTotal.WithLabelValues(string(ev.Type), "poll", string(res.Outcome)).Inc()
			if res.Outcome == lattice.Applied {
				s.Applied++
				logger.Info("deprecated model in use; migration created", "namespace", sub.Namespace, "model", m.ID, "replacement", replacement)
			}
		}
	}
	return nil
}

// workloadsUsing lists, page by page and without caching, the Deployments and
// StatefulSets of a namespace whose containers or annotations name model.
func (p *Poller) workloadsUsing(ctx context.Context, namespace, model string) ([]string, error) {
	var users []string
	var deps appsv1.DeploymentList
	for cont := ""; ; cont = deps.Continue {
		if err := p.Client.List(ctx, &deps, client.InNamespace(namespace), client.Limit(500), client.Continue(cont)); err != nil {
			return nil, fmt.Errorf("listing Deployments in %s: %w", namespace, err)
		}
		for i := range deps.Items {
			if uses(deps.Items[i].Annotations, &deps.Items[i].Spec.Template, model) {
				users = append(users, "Deployment/"+deps.Items[i].Name)
			}
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
			if uses(sets.Items[i].Annotations, &sets.Items[i].Spec.Template, model) {
				users = append(users, "StatefulSet/"+sets.Items[i].Name)
			}
		}
		if sets.Continue == "" {
			break
		}
	}
	return users, nil
}

func uses(annotations map[string]string, tmpl *corev1.PodTemplateSpec, model string) bool {
	return len(migration.Scan(migration.Workload{Annotations: annotations, Template: tmpl}, migration.Target{From: model, To: model + "-replacement"})) > 0
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
	p.Recorder.Eventf(sub, nil, "Warning", "DeprecatedModelInUse", "Poll",
		"Model %s is deprecated and used by %v, but no replacement is known: add it to spec.modelReplacements to migrate them", model, users)
}
