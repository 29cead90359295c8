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

package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// row is one resource in the status table.
type row struct {
	kind, namespace, name, phase, ready, detail string
}

// readyColumn shows True, or the reason Ready is not True (Stalled's
// reason first: that is what needs a person).
func readyColumn(conds []metav1.Condition) string {
	if s := apimeta.FindStatusCondition(conds, togetherv1.StalledCondition); s != nil && s.Status == metav1.ConditionTrue {
		return "Stalled: " + s.Reason
	}
	r := apimeta.FindStatusCondition(conds, togetherv1.ReadyCondition)
	switch {
	case r == nil:
		return "Unknown"
	case r.Status == metav1.ConditionTrue:
		return "True"
	default:
		return "False: " + r.Reason
	}
}

func status(ctx context.Context, e *env, namespace string) error {
	opts := []client.ListOption{client.InNamespace(namespace)}
	var rows []row

	var subs togetherv1.TogetherWebhookSubscriptionList
	if err := e.c.List(ctx, &subs, opts...); err != nil {
		return fmt.Errorf("listing TogetherWebhookSubscriptions: %w", err)
	}
	for _, s := range subs.Items {
		rows = append(rows, row{"tws", s.Namespace, s.Name, "-", readyColumn(s.Status.Conditions), s.Status.WebhookPath})
	}

	var fts togetherv1.TogetherFineTuneList
	if err := e.c.List(ctx, &fts, opts...); err != nil {
		return fmt.Errorf("listing TogetherFineTunes: %w", err)
	}
	for _, ft := range fts.Items {
		var detail []string
		if ft.Status.Step > 0 {
			detail = append(detail, fmt.Sprintf("step %d", ft.Status.Step))
		}
		if ft.Status.Loss != nil {
			detail = append(detail, fmt.Sprintf("loss %.4g", *ft.Status.Loss))
		}
		if ft.Status.EvalLoss != nil {
			detail = append(detail, fmt.Sprintf("eval %.4g", *ft.Status.EvalLoss))
		}
		if ft.Status.Phase == togetherv1.FineTuneRunning {
			if s := sparkline(losses(ft.Status.Checkpoints)); s != "" {
				detail = append(detail, s)
			}
		}
		if ft.Status.OutputModel != "" {
			detail = append(detail, ft.Status.OutputModel)
		}
		rows = append(rows, row{"tft", ft.Namespace, ft.Name, string(ft.Status.Phase), readyColumn(ft.Status.Conditions), strings.Join(detail, "  ")})
	}

	var batches togetherv1.TogetherBatchList
	if err := e.c.List(ctx, &batches, opts...); err != nil {
		return fmt.Errorf("listing TogetherBatches: %w", err)
	}
	for _, b := range batches.Items {
		detail := ""
		if b.Status.TotalTokens > 0 {
			detail = fmt.Sprintf("%d tokens", b.Status.TotalTokens)
		}
		rows = append(rows, row{"tbatch", b.Namespace, b.Name, string(b.Status.Phase), readyColumn(b.Status.Conditions), detail})
	}

	var migs togetherv1.TogetherModelMigrationList
	if err := e.c.List(ctx, &migs, opts...); err != nil {
		return fmt.Errorf("listing TogetherModelMigrations: %w", err)
	}
	for _, m := range migs.Items {
		detail := fmt.Sprintf("%s -> %s  %d/%d migrated", m.Spec.ModelID, m.Spec.ReplacementModel, m.Status.Migrated, len(m.Status.Targets))
		if m.Status.AtRisk > 0 {
			detail += fmt.Sprintf("  %d AT RISK", m.Status.AtRisk)
		}
		if m.Spec.SunsetDate != "" {
			detail += "  sunset " + m.Spec.SunsetDate
		}
		rows = append(rows, row{"tmm", m.Namespace, m.Name, string(m.Status.Phase), readyColumn(m.Status.Conditions), detail})
	}

	if len(rows) == 0 {
		where := "namespace " + namespace
		if namespace == "" {
			where = "any namespace"
		}
		fmt.Fprintf(e.out, "No together.ai resources in %s.\n", where)
		return nil
	}
	kindOrder := map[string]int{"tws": 0, "tft": 1, "tbatch": 2, "tmm": 3}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].kind != rows[j].kind {
			return kindOrder[rows[i].kind] < kindOrder[rows[j].kind]
		}
		if rows[i].namespace != rows[j].namespace {
			return rows[i].namespace < rows[j].namespace
		}
		return rows[i].name < rows[j].name
	})
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tPHASE\tREADY\tDETAIL")
	for _, r := range rows {
		phase := r.phase
		if phase == "" {
			phase = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.kind, r.namespace, r.name, phase, r.ready, r.detail)
	}
	return tw.Flush()
}

// losses returns the checkpoints' losses in step order (status keeps them
// newest last; sorting makes that an invariant here, not an assumption).
func losses(cps []togetherv1.Checkpoint) []float64 {
	sorted := append([]togetherv1.Checkpoint(nil), cps...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Step < sorted[j].Step })
	var out []float64
	for _, c := range sorted {
		if c.Loss != nil && !math.IsNaN(*c.Loss) && !math.IsInf(*c.Loss, 0) {
			out = append(out, *c.Loss)
		}
	}
	return out
}

var sparks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws values as one line of block characters, lowest to highest.
func sparkline(values []float64) string {
	if len(values) == 0 {
		return ""
	}
	lo, hi := values[0], values[0]
	for _, v := range values {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	var b strings.Builder
	for _, v := range values {
		i := len(sparks) / 2
		if hi > lo {
			i = int(math.Round((v - lo) / (hi - lo) * float64(len(sparks)-1)))
		}
		b.WriteRune(sparks[i])
	}
	return b.String()
}
