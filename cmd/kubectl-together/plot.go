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
	"io"
	"math"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

func plot(ctx context.Context, e *env, name string, width, height int) error {
	var ft togetherv1.TogetherFineTune
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: name}, &ft); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no TogetherFineTune %s in namespace %s", name, e.namespace)
		}
		return fmt.Errorf("reading TogetherFineTune %s/%s: %w", e.namespace, name, err)
	}
	fmt.Fprintf(e.out, "%s/%s  phase %s  step %d\n", ft.Namespace, ft.Name, orDash(string(ft.Status.Phase)), ft.Status.Step)
	drawLoss(e.out, ft.Status.Checkpoints, ft.Status.EvalLoss, width, height)
	fmt.Fprintf(e.out, "(status keeps the %d newest checkpoints; the whole run's curve is the together_finetune_loss series in Prometheus)\n", togetherv1.MaxCheckpoints)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type point struct {
	step int64
	loss float64
}

// drawLoss plots loss against step: '*' for each checkpoint, and a row of
// '-' at the eval loss when there is one. The y axis is labelled with the
// top, middle and bottom values, the x axis with the first and last steps.
func drawLoss(w io.Writer, cps []togetherv1.Checkpoint, evalLoss *float64, width, height int) {
	var pts []point
	for _, c := range cps {
		if c.Loss != nil && !math.IsNaN(*c.Loss) && !math.IsInf(*c.Loss, 0) {
			pts = append(pts, point{c.Step, *c.Loss})
		}
	}
	if len(pts) == 0 {
		fmt.Fprintln(w, "no checkpoint with a loss yet")
		return
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].step < pts[j].step })
	width, height = max(width, 10), max(height, 3)
	lo, hi := pts[0].loss, pts[0].loss
	for _, p := range pts {
		lo, hi = math.Min(lo, p.loss), math.Max(hi, p.loss)
	}
	if evalLoss != nil {
		lo, hi = math.Min(lo, *evalLoss), math.Max(hi, *evalLoss)
	}
	if hi == lo {
		hi, lo = hi+0.5, lo-0.5
	}
	row := func(v float64) int { // 0 is the top row
		return height - 1 - int(math.Round((v-lo)/(hi-lo)*float64(height-1)))
	}
	first, last := pts[0].step, pts[len(pts)-1].step
	col := func(step int64) int {
		if last == first {
			return 0
		}
		return int(math.Round(float64(step-first) / float64(last-first) * float64(width-1)))
	}
	grid := make([][]rune, height)
	for i := range grid {
		grid[i] = []rune(strings.Repeat(" ", width))
	}
	if evalLoss != nil {
		r := row(*evalLoss)
		for c := range grid[r] {
			grid[r][c] = '-'
		}
	}
	for _, p := range pts {
		grid[row(p.loss)][col(p.step)] = '*'
	}
	for i, line := range grid {
		label := ""
		switch i {
		case 0:
			label = fmt.Sprintf("%.4g", hi)
		case height / 2:
			label = fmt.Sprintf("%.4g", hi-(hi-lo)*float64(i)/float64(height-1))
		case height - 1:
			label = fmt.Sprintf("%.4g", lo)
		}
		fmt.Fprintf(w, "%10s ┤%s\n", label, string(line))
	}
	fmt.Fprintf(w, "%10s └%s\n", "", strings.Repeat("─", width))
	firstLabel := fmt.Sprintf("step %d", first)
	lastLabel := fmt.Sprintf("%d", last)
	gap := max(width-len(firstLabel)-len(lastLabel), 1)
	fmt.Fprintf(w, "%10s  %s%s%s\n", "", firstLabel, strings.Repeat(" ", gap), lastLabel)
	legend := fmt.Sprintf("* training loss (%d checkpoints)", len(pts))
	if evalLoss != nil {
		legend += fmt.Sprintf("   - eval loss %.4g", *evalLoss)
	}
	fmt.Fprintf(w, "%10s  %s\n", "", legend)
}
