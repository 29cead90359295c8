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
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/catalogue"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/reconcile"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/workload"
)

// Defaults of the reconciler's tunables.
const (
	// DefaultMigrationRescanInterval is how often workloads are scanned again,
	// because Deployments are not watched (a cluster-wide informer over every
	// Deployment costs more than a periodic paginated list of one namespace).
	DefaultMigrationRescanInterval = 5 * time.Minute
	// DefaultMigrationWorkers bounds concurrent workload patches.
	DefaultMigrationWorkers = 8
	// DefaultMigrationPageSize is the page size of workload lists.
	DefaultMigrationPageSize = 500
	// migrationRetryInterval is the requeue after a patch failed, shorter than
	// the rescan interval because conflicts clear quickly.
	migrationRetryInterval = 30 * time.Second
	// maxErrorLen keeps one workload's error from bloating status.
	maxErrorLen = 300
)

// TogetherModelMigrationReconciler moves Deployments and StatefulSets off a
// deprecated model. It is exported with its tunables so benchmarks can drive
// it directly.
type TogetherModelMigrationReconciler struct {
	client.Client
	Recorder EventRecorder
	// Now is the clock; tests move it to fire schedules. Defaults to time.Now.
	Now func() time.Time
	// RescanInterval is how often new workloads using the old model are
	// looked for. Defaults to DefaultMigrationRescanInterval.
	RescanInterval time.Duration
	// Workers bounds concurrent patches. Defaults to DefaultMigrationWorkers.
	Workers int
	// PageSize is the list page size. Defaults to DefaultMigrationPageSize.
	PageSize int64
	// TogetherAccess is the API, where its key came from, and the namespace
	// accounts: a migration reads only the model list, to check
	// spec.replacementModel before it changes anything.
	TogetherAccess[ModelsAPI]
	// Catalogue keeps each account's model list for a short time, so that
	// many migrations reconciled again and again cost one list call per
	// account per TTL. Nil means one of the reconciler's own.
	Catalogue *catalogue.Cache

	catalogueOnce sync.Once

	// check sees every status patch (the ownership test sets it).
	check func(before, after client.Object, patch map[string]any) error
}

// ModelsAPI is the part of the Together client the migration reconciler
// uses.
type ModelsAPI interface {
	ListModels(ctx context.Context) ([]together.Model, error)
}

var _ ModelsAPI = (*together.Client)(nil)

// +kubebuilder:rbac:groups=together.ai,resources=togethermodelmigrations,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=together.ai,resources=togethermodelmigrations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=together.ai,resources=togethermodelmigrations/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// kind is TogetherModelMigration's declaration for the shared skeleton
// (reconcile.go). A migration owns nothing that must outlive it, so it has
// no finalizer. Its steps share one migrationRun per reconcile.
func (r *TogetherModelMigrationReconciler) kind() *kind[*togetherv1.TogetherModelMigration] {
	run := &migrationRun{r: r}
	return &kind[*togetherv1.TogetherModelMigration]{
		conditions: reconcile.Conditions{
			Owned: []string{togetherv1.ReadyCondition, togetherv1.ReconcilingCondition, togetherv1.StalledCondition},
		},
		newObj: func() *togetherv1.TogetherModelMigration { return &togetherv1.TogetherModelMigration{} },
		status: func(m *togetherv1.TogetherModelMigration) any { return m.Status },
		// Nothing outside the object to clean up but its metric series.
		gone: func(req ctrl.Request) { workloadsAtRisk.DeleteLabelValues(req.Namespace, req.Name) },
		steps: []step[*togetherv1.TogetherModelMigration]{
			// schedule: read the spec and the clock: is it time to migrate?
			// Stalls: InvalidSpec.
			{name: "schedule", run: run.schedule},
			// catalogue: unless spec.skipCatalogCheck, check that
			// spec.replacementModel is in the account's model list. A
			// failure does not stop the scan (status.targets still says what
			// would move); it stops the patch and the phase step reports it:
			// ReplacementNotInCatalogue, NoCredentials, or Together's error.
			{name: "catalogue", run: run.catalogue},
			// scan: list the selected workloads, page by page, and find the
			// fields that use the old model.
			{name: "scan", run: run.scan},
			// patch: when it is time (and not a dry run), patch them with a
			// bounded pool of workers.
			{name: "patch", run: run.patch},
			// record: keep status.targets, migrated and atRisk, and warn
			// once per change of the workloads at risk after the sunset.
			{name: "record", run: run.record},
			// phase: set the phase and say what Ready says (Scheduled,
			// AwaitingApproval, DryRun, Succeeded), or stall when workloads
			// could not be patched (MigrationFailed, PartiallyMigrated).
			{name: "phase", run: run.phase},
		},
	}
}

// Reconcile scans the namespace's workloads for the deprecated model and,
// when the strategy says it is time, patches them to the replacement.
func (r *TogetherModelMigrationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return r.kind().run(ctx, r.Client, r.Recorder, req, r.check)
}

// migrationRun is what the steps of one reconcile learn and pass on.
type migrationRun struct {
	r       *TogetherModelMigrationReconciler
	now     time.Time
	prev    *togetherv1.TogetherModelMigrationStatus
	plan    migrationPlan
	found   []*foundWorkload
	moved   []movedTarget
	held    []togetherv1.MigrationTarget
	patched int
	// blocked is why nothing may be patched (the catalogue check failed).
	blocked error
}

func (m *migrationRun) schedule(_ context.Context, obj *togetherv1.TogetherModelMigration, _ *scope) (ctrl.Result, error) {
	m.now = m.r.now()
	m.prev = obj.Status.DeepCopy()
	plan, err := m.r.reconcileSchedule(obj, m.now)
	m.plan = plan
	return ctrl.Result{}, err
}

func (m *migrationRun) catalogue(ctx context.Context, obj *togetherv1.TogetherModelMigration, _ *scope) (ctrl.Result, error) {
	if !obj.Spec.SkipCatalogCheck {
		m.blocked = m.r.checkCatalogue(ctx, obj)
	}
	return ctrl.Result{}, nil
}

func (m *migrationRun) scan(ctx context.Context, obj *togetherv1.TogetherModelMigration, _ *scope) (ctrl.Result, error) {
	var err error
	m.found, m.moved, m.held, err = m.r.reconcileScan(ctx, obj, m.plan.selector)
	return ctrl.Result{}, err
}

func (m *migrationRun) patch(ctx context.Context, obj *togetherv1.TogetherModelMigration, _ *scope) (ctrl.Result, error) {
	if m.plan.active && !obj.Spec.DryRun && m.blocked == nil {
		m.patched = m.r.reconcilePatches(ctx, obj, m.found, m.now)
	}
	return ctrl.Result{}, nil
}

func (m *migrationRun) record(_ context.Context, obj *togetherv1.TogetherModelMigration, _ *scope) (ctrl.Result, error) {
	m.r.reconcileTargets(obj, m.found, m.moved, m.held, m.now)
	m.r.reconcileAtRisk(obj, m.prev, m.found, m.plan, m.now)
	return ctrl.Result{}, nil
}

func (m *migrationRun) phase(_ context.Context, obj *togetherv1.TogetherModelMigration, s *scope) (ctrl.Result, error) {
	if m.blocked != nil {
		// Nothing moves until the check passes.
		obj.Status.Phase = togetherv1.MigrationPending
		return ctrl.Result{}, m.blocked
	}
	return m.r.reconcilePhase(obj, m.prev, m.found, m.plan, m.patched, s)
}

// migrationPlan is what the spec and the clock say about this reconcile.
type migrationPlan struct {
	selector  labels.Selector
	active    bool          // time to migrate (or, in a dry run, to list)
	wait      time.Duration // until a BeforeSunset migration fires
	sunset    time.Time
	hasSunset bool
}

// reconcileSchedule decides whether this reconcile migrates. It returns a
// stall when the spec cannot be acted on.
func (r *TogetherModelMigrationReconciler) reconcileSchedule(obj *togetherv1.TogetherModelMigration, now time.Time) (migrationPlan, error) {
	var plan migrationPlan
	// Without a selector only workloads that opted in are considered: a
	// migration never reaches every workload of a namespace implicitly.
	sel := labels.SelectorFromSet(labels.Set{togetherv1.MigrateOptInLabel: "true"})
	if obj.Spec.Selector != nil {
		s, err := metav1.LabelSelectorAsSelector(obj.Spec.Selector)
		if err != nil {
			return plan, reconcile.Stalling(togetherv1.ReasonInvalidSpec,
				fmt.Sprintf("spec.selector is not a valid label selector (%v); fix it to select the Deployments and StatefulSets to migrate.", err))
		}
		sel = s
	}
	plan.selector = sel
	if obj.Spec.SunsetDate != "" {
		t, err := time.Parse(time.DateOnly, obj.Spec.SunsetDate)
		if err != nil {
			return plan, reconcile.Stalling(togetherv1.ReasonInvalidSpec,
				fmt.Sprintf("spec.sunsetDate %q is not a date in YYYY-MM-DD form; fix it.", obj.Spec.SunsetDate))
		}
		plan.sunset, plan.hasSunset = t.UTC(), true
	}

	obj.Status.ScheduledTime = nil
	switch obj.Spec.Strategy {
	case togetherv1.MigrationBeforeSunset:
		if !plan.hasSunset {
			return plan, reconcile.Stalling(togetherv1.ReasonInvalidSpec,
				"strategy BeforeSunset needs spec.sunsetDate; set it or choose another strategy.")
		}
		lead := 168 * time.Hour
		if obj.Spec.LeadTime != nil {
			lead = obj.Spec.LeadTime.Duration
		}
		at := plan.sunset.Add(-lead)
		obj.Status.ScheduledTime = &metav1.Time{Time: at}
		plan.active = !now.Before(at)
		if !plan.active {
			plan.wait = at.Sub(now)
		}
	case togetherv1.MigrationManual:
		plan.active = obj.Annotations[togetherv1.ApproveMigrationAnnotation] == "true"
	default:
		plan.active = true
	}
	return plan, nil
}

// checkCatalogue returns nil when spec.replacementModel is in the model
// list (GET /v1/models) of the namespace's Together account, and otherwise
// the error that says why nothing may be patched: the model is not listed
// (a stall naming the opt-out), the namespace has no credentials, or
// Together's answer, classified as every kind classifies it. The list is
// Together's open-source models (together-go model.go List); fine-tuned,
// uploaded and dedicated-endpoint models are not documented to appear in
// it, hence spec.skipCatalogCheck.
func (r *TogetherModelMigrationReconciler) checkCatalogue(ctx context.Context, obj *togetherv1.TogetherModelMigration) error {
	optOut := "set spec.skipCatalogCheck: true to migrate without the check (for a fine-tuned or private model the public list does not include)"
	api, account, keySource := r.API, "operator-wide", r.KeySource
	if r.Accounts != nil {
		var ref *credentials.SecretRef
		if res, ok := any(obj).(credentials.Resource); ok {
			ref = credentials.RefOf(res)
		}
		acc, err := r.Accounts.For(ctx, obj.Namespace, ref)
		if errors.Is(err, credentials.ErrNoCredentials) {
			return reconcile.Stalling(credentials.Reason(err), fmt.Sprintf(
				"%v. The migration checks spec.replacementModel against the account's model list before it changes anything; create the Secret, or %s.", err, optOut))
		}
		if err != nil {
			return fmt.Errorf("finding the Together account of namespace %s: %w", obj.Namespace, err)
		}
		api, account = acc.Client, acc.ID
		if acc.Source != credentials.SharedSource {
			keySource = "Secret " + acc.Source
		}
	}
	if api == nil {
		return reconcile.Stalling(togetherv1.ReasonNoCredentials, fmt.Sprintf(
			"The operator has no Together API key to check spec.replacementModel against the model list; configure one, or %s.", optOut))
	}
	cat := r.catalogue()
	ok, err := cat.Has(ctx, account, api, obj.Spec.ReplacementModel)
	if err != nil {
		return reconcile.APIFailure(err, "listing Together's models to check spec.replacementModel", keySource)
	}
	if !ok {
		return reconcile.Stalling(togetherv1.ReasonReplacementNotInCatalogue, fmt.Sprintf(
			"spec.replacementModel %q is not in Together's model list (GET /v1/models) for this namespace's account, so no workload was changed. Fix the model ID (the list's IDs are case-sensitive), or %s. Checked again every %s.",
			obj.Spec.ReplacementModel, optOut, cat.TTL())).After(cat.TTL())
	}
	return nil
}

// catalogue returns the model-list cache, the reconciler's own when none
// was given.
func (r *TogetherModelMigrationReconciler) catalogue() *catalogue.Cache {
	r.catalogueOnce.Do(func() {
		if r.Catalogue == nil {
			r.Catalogue = catalogue.New(0, 0, nil)
		}
	})
	return r.Catalogue
}

// foundWorkload is one workload that uses the old model.
type foundWorkload struct {
	kind    string
	name    string
	changes []workload.Change
	patch   []byte
	// result of patching: at most one of patchedAt and err is set.
	patchedAt *metav1.Time
	err       string
}

// movedTarget is a field that an earlier reconcile moved: its workload names
// spec.modelID as its previous model and the field holds the replacement.
type movedTarget struct {
	target togetherv1.MigrationTarget
	// inRollback: the workload's rollback patch restores this field, so the
	// migration wrote it even if no status recorded it.
	inRollback bool
}

// reconcileScan lists the Deployments and StatefulSets selected by the spec,
// page by page, and keeps the ones that use the old model, sorted by kind
// and name. It also returns the fields of workloads already moved off the
// old model, so that the record of patched targets does not depend on a
// status write having succeeded (it may conflict with the event intake's
// after the workloads were patched).
func (r *TogetherModelMigrationReconciler) reconcileScan(ctx context.Context, obj *togetherv1.TogetherModelMigration, sel labels.Selector) ([]*foundWorkload, []movedTarget, []togetherv1.MigrationTarget, error) {
	var found []*foundWorkload
	var moved []movedTarget
	var held []togetherv1.MigrationTarget
	t := workload.Target{From: obj.Spec.ModelID, To: obj.Spec.ReplacementModel, EnvNames: obj.Spec.ModelEnvNames()}
	add := func(kind string, meta *metav1.ObjectMeta, tmpl *corev1.PodTemplateSpec) error {
		w := workload.Workload{Annotations: meta.Annotations, Template: tmpl, ResourceVersion: meta.ResourceVersion}
		// A record that cannot be read stops this workload only: its
		// targets carry the error (naming the annotation to fix) and it is
		// not patched, since its rollback could not be kept.
		rec, recErr := workload.Read(w)
		if recErr != nil {
			rec = workload.Record{}
		}
		moved = append(moved, movedTargets(kind, meta.Name, w, rec, t)...)
		for _, h := range workload.Held(w, t) {
			held = append(held, togetherv1.MigrationTarget{Kind: kind, Name: meta.Name, Container: h.Container, Field: h.Field, From: h.From, To: h.From, HeldBy: h.HeldBy})
		}
		changes := workload.Scan(w, t)
		if len(changes) == 0 {
			return nil
		}
		if recErr != nil {
			found = append(found, &foundWorkload{kind: kind, name: meta.Name, changes: changes, err: truncateError(recErr.Error())})
			return nil
		}
		patch, err := workload.Patch(w, changes, workload.Options{RollbackTo: obj.Spec.ModelID})
		if err != nil {
			return fmt.Errorf("building patch for %s %s: %w", kind, meta.Name, err)
		}
		found = append(found, &foundWorkload{kind: kind, name: meta.Name, changes: changes, patch: patch})
		return nil
	}
	opts := []client.ListOption{client.InNamespace(obj.Namespace), client.MatchingLabelsSelector{Selector: sel}, client.Limit(r.pageSize())}

	deployments := &appsv1.DeploymentList{}
	for cont := ""; ; {
		if err := r.List(ctx, deployments, append(opts, client.Continue(cont))...); err != nil {
			return nil, nil, nil, fmt.Errorf("listing Deployments in %s: %w", obj.Namespace, err)
		}
		for i := range deployments.Items {
			d := &deployments.Items[i]
			if err := add("Deployment", &d.ObjectMeta, &d.Spec.Template); err != nil {
				return nil, nil, nil, err
			}
		}
		if cont = deployments.Continue; cont == "" {
			break
		}
	}
	statefulSets := &appsv1.StatefulSetList{}
	for cont := ""; ; {
		if err := r.List(ctx, statefulSets, append(opts, client.Continue(cont))...); err != nil {
			return nil, nil, nil, fmt.Errorf("listing StatefulSets in %s: %w", obj.Namespace, err)
		}
		for i := range statefulSets.Items {
			s := &statefulSets.Items[i]
			if err := add("StatefulSet", &s.ObjectMeta, &s.Spec.Template); err != nil {
				return nil, nil, nil, err
			}
		}
		if cont = statefulSets.Continue; cont == "" {
			break
		}
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].kind != found[j].kind {
			return found[i].kind < found[j].kind
		}
		return found[i].name < found[j].name
	})
	return found, moved, held, nil
}

// movedTargets lists the fields of a migrated workload that hold the
// replacement: a reverse scan (replacement to old model) names them exactly
// as the forward scan named them before the patch. A workload counts as
// moved by this migration only when its rollback record (in any format)
// puts one of them back to the old model; inRollback says which do.
func movedTargets(kind, name string, w workload.Workload, rec workload.Record, t workload.Target) []movedTarget {
	if !rec.Found() {
		return nil
	}
	reverse := workload.Scan(w, workload.Target{From: t.To, To: t.From, EnvNames: t.EnvNames})
	var out []movedTarget
	ours := false
	for _, c := range reverse {
		prev, ok := rec.Previous(c.Path)
		restores := ok && prev == c.To
		ours = ours || restores
		out = append(out, movedTarget{
			target: togetherv1.MigrationTarget{
				Kind: kind, Name: name, Container: c.Container, Field: c.Field, From: c.To, To: c.From,
			},
			inRollback: restores,
		})
	}
	if !ours {
		return nil
	}
	return out
}

// reconcilePatches patches the found workloads with a bounded pool of
// workers. A workload that cannot be patched records why and does not stop
// the others. It returns how many workloads were patched.
func (r *TogetherModelMigrationReconciler) reconcilePatches(ctx context.Context, obj *togetherv1.TogetherModelMigration, found []*foundWorkload, now time.Time) int {
	log := logf.FromContext(ctx)
	at := metav1.NewTime(now.UTC().Truncate(time.Second))
	work := make(chan *foundWorkload)
	var wg sync.WaitGroup
	for range min(r.workers(), len(found)) {
		wg.Go(func() {
			for w := range work {
				if w.patch == nil {
					continue // not patchable; w.err says why
				}
				var target client.Object = &appsv1.Deployment{}
				if w.kind == "StatefulSet" {
					target = &appsv1.StatefulSet{}
				}
				target.SetNamespace(obj.Namespace)
				target.SetName(w.name)
				if err := workload.Apply(ctx, r.Client, target, w.patch); err != nil {
					log.Info("could not patch workload", "kind", w.kind, "name", w.name, "error", err.Error())
					w.err = describePatchError(err)
					continue
				}
				w.patchedAt = &at
			}
		})
	}
	for _, w := range found {
		work <- w
	}
	close(work)
	wg.Wait()

	patched := 0
	for _, w := range found {
		if w.patchedAt != nil {
			patched++
		}
	}
	return patched
}

// describePatchError turns an API error into a short per-target reason.
func describePatchError(err error) string {
	msg := err.Error()
	if reason := apierrors.ReasonForError(err); reason != metav1.StatusReasonUnknown {
		msg = string(reason) + ": " + msg
	}
	return truncateError(msg)
}

// truncateError keeps one workload's error from bloating status.
func truncateError(msg string) string {
	if len(msg) > maxErrorLen {
		msg = msg[:maxErrorLen] + "…"
	}
	return msg
}

// targetKey identifies a target across reconciles.
func targetKey(t togetherv1.MigrationTarget) string {
	return t.Kind + "/" + t.Name + "/" + t.Field
}

// reconcileTargets records what was found this time and keeps the record of
// earlier patches: a target stays recorded while its workload holds the
// replacement in that field, whether or not a status write recorded the
// patch (the write can conflict after the workloads were patched, and a
// later scan no longer finds them). Targets no longer found and not moved by
// this migration (fixed by someone else, or deleted) are dropped.
// lastScanTime moves only when the targets change, so that a scan that
// finds nothing new writes nothing.
func (r *TogetherModelMigrationReconciler) reconcileTargets(obj *togetherv1.TogetherModelMigration, found []*foundWorkload, moved []movedTarget, held []togetherv1.MigrationTarget, now time.Time) {
	targets := []togetherv1.MigrationTarget{}
	seen := map[string]bool{}
	for _, w := range found {
		for _, c := range w.changes {
			t := togetherv1.MigrationTarget{
				Kind: w.kind, Name: w.name, Container: c.Container, Field: c.Field, From: c.From, To: c.To,
				PatchedAt: w.patchedAt, Error: w.err,
			}
			seen[targetKey(t)] = true
			targets = append(targets, t)
		}
	}
	patchedBefore := map[string]togetherv1.MigrationTarget{}
	for _, t := range obj.Status.Targets {
		if t.PatchedAt != nil {
			patchedBefore[targetKey(t)] = t
		}
	}
	for _, m := range moved {
		key := targetKey(m.target)
		if seen[key] {
			continue
		}
		prev, recorded := patchedBefore[key]
		switch {
		case recorded && prev.From == m.target.From && prev.To == m.target.To:
			seen[key] = true
			targets = append(targets, prev)
		case m.inRollback:
			// Patched by a reconcile whose status write was lost; when is
			// not known more closely than now.
			t := m.target
			t.PatchedAt = &metav1.Time{Time: now.UTC().Truncate(time.Second)}
			seen[key] = true
			targets = append(targets, t)
		}
	}
	// Env vars a fine-tune holds are listed, never patched.
	targets = append(targets, held...)
	sort.SliceStable(targets, func(i, j int) bool { return targetKey(targets[i]) < targetKey(targets[j]) })
	if len(targets) == 0 {
		targets = nil
	}
	if !equality.Semantic.DeepEqual(targets, obj.Status.Targets) {
		obj.Status.Targets = targets
		obj.Status.LastScanTime = &metav1.Time{Time: now.UTC().Truncate(time.Second)}
	}
	var migrated int32
	for _, t := range targets {
		if t.PatchedAt != nil {
			migrated++
		}
	}
	obj.Status.Migrated = migrated
}

// reconcileAtRisk counts, after the sunset date, the workloads still on the
// old model, exports the count as a metric and emits one Warning Event each
// time the set of such workloads changes (not on every rescan).
func (r *TogetherModelMigrationReconciler) reconcileAtRisk(obj *togetherv1.TogetherModelMigration, prev *togetherv1.TogetherModelMigrationStatus, found []*foundWorkload, plan migrationPlan, now time.Time) {
	var atRisk []string
	if plan.hasSunset && !now.Before(plan.sunset) {
		for _, w := range found {
			if w.patchedAt == nil {
				atRisk = append(atRisk, w.kind+"/"+w.name)
			}
		}
	}
	obj.Status.AtRisk = int32(len(atRisk))
	workloadsAtRisk.WithLabelValues(obj.Namespace, obj.Name).Set(float64(len(atRisk)))

	// The previous set is the unpatched targets of the previous status, when
	// it counted any at risk.
	var before []string
	if prev.AtRisk > 0 {
		set := map[string]bool{}
		for _, t := range prev.Targets {
			if t.PatchedAt == nil && t.HeldBy == "" && !set[t.Kind+"/"+t.Name] {
				set[t.Kind+"/"+t.Name] = true
				before = append(before, t.Kind+"/"+t.Name)
			}
		}
		sort.Strings(before)
	}
	if equality.Semantic.DeepEqual(before, atRisk) {
		return
	}
	switch {
	case len(atRisk) > 0:
		r.event(obj, togetherv1.EventTypeWarning, togetherv1.ReasonWorkloadsAtRisk, "CheckSunset",
			"%d workload(s) still use %s after its sunset date %s, so their requests will fail: %s. Migrate them to %s (see status.targets).",
			len(atRisk), obj.Spec.ModelID, obj.Spec.SunsetDate, summarize(atRisk), obj.Spec.ReplacementModel)
	case len(before) > 0:
		r.event(obj, togetherv1.EventTypeNormal, togetherv1.ReasonNoWorkloadsAtRisk, "CheckSunset",
			"No workload uses %s any more.", obj.Spec.ModelID)
	}
}

// reconcilePhase sets the phase and Events from what happened, says what
// Ready says (or why the migration is stalled), and when to look again.
func (r *TogetherModelMigrationReconciler) reconcilePhase(obj *togetherv1.TogetherModelMigration, prev *togetherv1.TogetherModelMigrationStatus, found []*foundWorkload, plan migrationPlan, patched int, s *scope) (ctrl.Result, error) {
	st := &obj.Status
	rescan := ctrl.Result{RequeueAfter: r.rescanInterval()}
	targets := 0
	for _, w := range found {
		targets += len(w.changes)
	}
	from, to := obj.Spec.ModelID, obj.Spec.ReplacementModel

	switch {
	case !plan.active && obj.Spec.Strategy == togetherv1.MigrationBeforeSunset:
		st.Phase = togetherv1.MigrationScheduled
		when := st.ScheduledTime.UTC().Format(time.RFC3339)
		if prev.Phase != st.Phase || !equality.Semantic.DeepEqual(prev.ScheduledTime, st.ScheduledTime) {
			r.event(obj, togetherv1.EventTypeNormal, togetherv1.ReasonScheduled, "Schedule", "Migration from %s to %s scheduled for %s.", from, to, when)
		}
		return ctrl.Result{}, reconcile.Waiting(togetherv1.ReasonScheduled,
			fmt.Sprintf("%d target(s) in %d workload(s) will move from %s to %s at %s (spec.sunsetDate minus spec.leadTime); set spec.strategy to Immediate to migrate now.",
				targets, len(found), from, to, when), min(plan.wait, r.rescanInterval()))

	case !plan.active:
		st.Phase = togetherv1.MigrationPending
		// Neither reconciling nor stalled: it waits for a person by design.
		s.succeeded(metav1.ConditionFalse, togetherv1.ReasonAwaitingApproval,
			fmt.Sprintf("%d target(s) in %d workload(s) would move from %s to %s (see status.targets); approve with: kubectl annotate togethermodelmigration %s %s=true",
				targets, len(found), from, to, obj.Name, togetherv1.ApproveMigrationAnnotation))
		if prev.Phase != st.Phase {
			r.event(obj, togetherv1.EventTypeNormal, togetherv1.ReasonAwaitingApproval, "Approve",
				"Migration from %s to %s waits for the annotation %s=true.", from, to, togetherv1.ApproveMigrationAnnotation)
		}
		return rescan, nil

	case obj.Spec.DryRun:
		st.Phase = togetherv1.MigrationCompleted
		s.succeeded(metav1.ConditionTrue, togetherv1.ReasonDryRun,
			fmt.Sprintf("Dry run: %d target(s) in %d workload(s) would move from %s to %s (see status.targets); nothing was changed. Set spec.dryRun to false to migrate.",
				targets, len(found), from, to))
		return rescan, nil
	}

	var failed []string
	for _, w := range found {
		if w.err != "" {
			failed = append(failed, w.kind+"/"+w.name)
		}
	}
	if patched > 0 {
		var names []string
		fields := 0
		for _, w := range found {
			if w.patchedAt != nil {
				names = append(names, w.kind+"/"+w.name)
				fields += len(w.changes)
			}
		}
		// Counted in targets (fields), as status.migrated and the MIGRATED
		// column are, and in workloads.
		r.event(obj, togetherv1.EventTypeNormal, togetherv1.ReasonMigrated, "Migrate",
			"Moved %d target(s) in %d workload(s) from %s to %s: %s.", fields, patched, from, to, summarize(names))
	}
	held := ""
	if n := heldCount(st.Targets); n > 0 {
		held = fmt.Sprintf(" %d env var(s) held by a fine-tune keep their model (status.targets[].heldBy): a fine-tune's deployed model takes precedence.", n)
	}
	if len(failed) > 0 && !equality.Semantic.DeepEqual(failedTargets(prev.Targets), failedTargets(st.Targets)) {
		r.event(obj, togetherv1.EventTypeWarning, togetherv1.ReasonPatchFailed, "Migrate",
			"Could not patch %d workload(s) to use %s: %s; see status.targets[].error.", len(failed), to, summarize(failed))
	}

	retry := min(migrationRetryInterval, r.rescanInterval())
	switch {
	case len(failed) == 0:
		st.Phase = togetherv1.MigrationCompleted
		s.succeeded(metav1.ConditionTrue, togetherv1.ReasonSucceeded,
			fmt.Sprintf("No selected workload uses %s where a migration may change it; %d target(s) moved to %s so far. New workloads are checked every %s.%s",
				from, st.Migrated, to, r.rescanInterval(), held))
		return rescan, nil
	case patched == 0 && st.Migrated == 0:
		st.Phase = togetherv1.MigrationFailed
		// Silent: the PatchFailed Event above names the workloads.
		return ctrl.Result{}, reconcile.Stalling(togetherv1.ReasonMigrationFailed,
			fmt.Sprintf("None of the %d workload(s) using %s could be patched; see status.targets[].error (for example, grant the operator patch on deployments and statefulsets, or lift the admission policy). Retried every %s.",
				len(failed), from, migrationRetryInterval)).After(retry).Silent()
	default:
		st.Phase = togetherv1.MigrationCompleted
		return ctrl.Result{}, reconcile.Stalling(togetherv1.ReasonPartiallyMigrated,
			fmt.Sprintf("%d workload(s) still use %s because they could not be patched: %s; see status.targets[].error. Retried every %s.",
				len(failed), from, summarize(failed), migrationRetryInterval)).After(retry).Silent()
	}
}

// heldCount counts the targets a fine-tune holds.
func heldCount(targets []togetherv1.MigrationTarget) int {
	n := 0
	for _, t := range targets {
		if t.HeldBy != "" {
			n++
		}
	}
	return n
}

// failedTargets is the set of failed targets with their errors, to emit the
// PatchFailed Event only when it changes rather than on every retry.
func failedTargets(targets []togetherv1.MigrationTarget) []string {
	var out []string
	for _, t := range targets {
		if t.Error != "" {
			out = append(out, targetKey(t)+": "+t.Error)
		}
	}
	return out
}

// summarize lists up to ten names so that an Event stays readable.
func summarize(names []string) string {
	if len(names) <= 10 {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:10], ", ") + fmt.Sprintf(" and %d more", len(names)-10)
}

func (r *TogetherModelMigrationReconciler) event(obj *togetherv1.TogetherModelMigration, eventType, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, eventType, reason, action, note, args...)
	}
}

func (r *TogetherModelMigrationReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *TogetherModelMigrationReconciler) rescanInterval() time.Duration {
	if r.RescanInterval > 0 {
		return r.RescanInterval
	}
	return DefaultMigrationRescanInterval
}

func (r *TogetherModelMigrationReconciler) workers() int {
	if r.Workers > 0 {
		return r.Workers
	}
	return DefaultMigrationWorkers
}

func (r *TogetherModelMigrationReconciler) pageSize() int64 {
	if r.PageSize > 0 {
		return r.PageSize
	}
	return DefaultMigrationPageSize
}

// SetupWithManager registers the reconciler with the manager. Workloads are
// not watched: the reconciler lists them on each (periodic) reconcile. The
// Secrets and Namespace label its account comes from are (metadata only).
func (r *TogetherModelMigrationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&togetherv1.TogetherModelMigration{}).
		Named("togethermodelmigration")
	if r.Accounts != nil {
		// The catalogue check reads the namespace's account: a key Secret
		// created or rotated, or the shared-key label set, wakes the
		// namespace's migrations instead of a recheck timer.
		secrets, err := r.secretWatch(mgr, &togetherv1.TogetherModelMigration{}, &togetherv1.TogetherModelMigrationList{}, nil)
		if err != nil {
			return err
		}
		b = r.withAccountWatches(b, mgr, &togetherv1.TogetherModelMigrationList{}, secrets)
	}
	return b.Complete(requeueConflicts(r))
}
