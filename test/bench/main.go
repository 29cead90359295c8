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

// Command bench measures the operator against a control plane and simulator
// it starts itself, and prints every throughput figure next to a baseline
// measured in the same run, because on a shared machine only ratios mean
// anything. After every scenario it checks that the result is correct (every
// acknowledged event's effect present, nothing extra) and exits non-zero
// otherwise: a fast wrong answer is not a result.
//
// Run it with `make bench`; -quick shrinks every scenario for development.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap/zapcore"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/togethersim"
)

// sizes are the scenario sizes; -quick divides them so that a development
// run takes a minute rather than several.
type sizes struct {
	distinct     int
	burstCRs     int
	burstPerCR   int
	steadyRate   int
	steadyFor    time.Duration
	deployments  int
	memSmall     int
	memLarge     int
	pollJobs     int
	senders      int
	stormSenders int // concurrent deliveries in the same-CR storm
	writerPool   int
	skipMemory   bool
	rssSettleMax time.Duration
}

// row is one line of the results table and one entry of results.json.
type row struct {
	Scenario string  `json:"scenario"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline float64 `json:"baseline,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
	Goal     string  `json:"goal"`
	Pass     bool    `json:"pass"`
	Note     string  `json:"note,omitempty"`
}

type bench struct {
	sz      sizes
	cfg     *rest.Config
	env     *envtest.Environment
	k8s     client.Client
	scheme  *runtime.Scheme
	sim     *togethersim.Server
	outDir  string
	rows    []row
	rawRate float64
	// rawP99 and rawObjs are the raw baseline's write latency and objects;
	// the latency scenarios are compared with the former and rawSteady
	// writes the latter again.
	only    string
	rawP99  time.Duration
	rawObjs []*togetherv1.TogetherFineTune
	// minRate, minP99 and minServerMs are the minimal baseline: a one-field
	// status merge patch of the same fine-tunes, 16 writers.
	minRate     float64
	minP99      time.Duration
	minServerMs float64
	// minClient writes the minimal patches through minMeter.
	minClient client.Client
	minMeter  writeMeter
}

func main() {
	out := flag.String("out", "bin/bench", "directory for results.json")
	crds := flag.String("crds", filepath.Join("config", "crd", "bases"), "CRD directory")
	quick := flag.Bool("quick", false, "shrink every scenario (development runs)")
	only := flag.String("only", "", "run only the scenarios whose step name contains this, or one of these comma-separated, in the order named (e.g. attack, or 'raw baseline,event intake', or 'memory,attack' for the attack beside 10,000 fine-tunes); the raw baseline runs only if named")
	noMem := flag.Bool("skip-memory", false, "skip the manager-memory scenario (it builds and runs the manager binary)")
	attackerPlan := flag.String("attacker", "", "run as the attack scenario's attacker process with this plan (used by the bench itself)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the bench process (senders, endpoint, apply step) to this file")
	flag.Parse()
	if *attackerPlan != "" {
		if err := runAttacker(*attackerPlan); err != nil {
			fmt.Fprintln(os.Stderr, "attacker:", err)
			os.Exit(1)
		}
		return
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	sz := sizes{
		distinct: 3000, burstCRs: 4, burstPerCR: 500, steadyRate: 200, steadyFor: 10 * time.Second,
		deployments: 1000, memSmall: 1000, memLarge: 10000, pollJobs: 1000, senders: 16, stormSenders: 128, writerPool: 32,
		skipMemory: *noMem, rssSettleMax: 45 * time.Second,
	}
	if *quick {
		sz.distinct, sz.burstPerCR, sz.steadyFor = 600, 150, 3*time.Second
		sz.deployments, sz.memSmall, sz.memLarge, sz.pollJobs = 200, 200, 1000, 200
		sz.rssSettleMax = 15 * time.Second
	}
	b := &bench{sz: sz, outDir: *out, only: *only}
	if err := b.run(*crds); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench FAILED:", err)
		os.Exit(1)
	}
}

// scenario is one step of the bench.
type scenario struct {
	name string
	fn   func(context.Context) error
}

func (b *bench) run(crdDir string) (err error) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	b.scheme = runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(b.scheme); err != nil {
		return err
	}
	if err := togetherv1.AddToScheme(b.scheme); err != nil {
		return err
	}
	if err := apiextensionsv1.AddToScheme(b.scheme); err != nil {
		return err
	}
	// verify+decode is a CPU benchmark of this process alone: it runs before
	// the control plane starts, so that kube-apiserver and etcd settling in
	// do not share the two cores with it.
	fmt.Fprintln(os.Stderr, "== verify+decode")
	if err := b.verifyDecode(context.Background()); err != nil {
		return fmt.Errorf("verify+decode: %w", err)
	}
	b.env = &envtest.Environment{CRDDirectoryPaths: []string{crdDir}, ErrorIfCRDPathMissing: true}
	start := time.Now()
	cfg, err := b.env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane (is KUBEBUILDER_ASSETS set? `make bench` sets it): %w", err)
	}
	defer func() {
		if stopErr := b.env.Stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	// The operator's binary takes its config from ctrl.GetConfigOrDie,
	// which turns client-go's client-side limiter off (QPS -1: the API
	// server's priority and fairness limits instead), so the bench does the
	// same: the intake's manager is measured with the setting it ships with,
	// and the baseline writers share this config, so neither side is
	// measured against a limiter (envtest's config would set QPS 1000).
	cfg.QPS, cfg.Burst = -1, 0
	b.cfg = cfg
	if b.k8s, err = client.New(cfg, client.Options{Scheme: b.scheme}); err != nil {
		return err
	}
	b.sim = togethersim.New(togethersim.Options{APIKey: benchAPIKey})
	if _, err := b.sim.Start(); err != nil {
		return err
	}
	defer b.sim.Close()
	fmt.Fprintf(os.Stderr, "control plane up in %s\n", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	steps := []scenario{
		// The attack runs first: its manager is measured with the 50
		// fine-tunes it defines, not beside the thousands the other
		// scenarios leave in the cluster (the scenario -only memory,attack
		// measures that case).
		{"attack", b.attack},
		{"raw baseline", b.rawBaseline},
		{"event intake", b.intake},
		{"migration", b.migration},
		{"poller", b.poller},
		{"memory", b.memory},
	}
	if b.only != "" {
		// -only runs the scenarios it names in the order it names them, so
		// that -only memory,attack measures the attack beside the memory
		// scenario's 10,000 fine-tunes.
		var picked []scenario
		for _, o := range strings.Split(b.only, ",") {
			for _, s := range steps {
				if strings.Contains(s.name, o) && !slices.ContainsFunc(picked, func(p scenario) bool { return p.name == s.name }) {
					picked = append(picked, s)
				}
			}
		}
		steps = picked
	}
	for _, s := range steps {
		t := time.Now()
		fmt.Fprintf(os.Stderr, "== %s\n", s.name)
		if err := s.fn(ctx); err != nil {
			b.print()
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(os.Stderr, "   done in %s\n", time.Since(t).Round(time.Millisecond))
	}
	b.print()
	if err := b.write(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "total %s\n", time.Since(start).Round(time.Second))
	var failed []string
	for _, r := range b.rows {
		if !r.Pass {
			failed = append(failed, r.Scenario)
		}
	}
	if len(failed) > 0 {
		// A missed speed goal is reported, not fatal: on a shared machine the
		// figures move. Correctness failures returned errors above.
		fmt.Fprintf(os.Stderr, "goals missed: %s\n", strings.Join(failed, "; "))
	}
	return nil
}

func (b *bench) add(r row) {
	b.rows = append(b.rows, r)
	fmt.Fprintf(os.Stderr, "   %s: %.4g %s (goal %s)\n", r.Scenario, r.Value, r.Unit, r.Goal)
}

func (b *bench) print() {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tvalue\tbaseline\tratio\tgoal\tpass")
	for _, r := range b.rows {
		base, ratio := "-", "-"
		if r.Baseline != 0 {
			base = fmt.Sprintf("%.4g", r.Baseline)
			ratio = fmt.Sprintf("%.2f", r.Ratio)
		}
		pass := "yes"
		if !r.Pass {
			pass = "NO"
		}
		fmt.Fprintf(tw, "%s\t%.4g %s\t%s\t%s\t%s\t%s\n", r.Scenario, r.Value, r.Unit, base, ratio, r.Goal, pass)
	}
	_ = tw.Flush()
}

func (b *bench) write() error {
	if err := os.MkdirAll(b.outDir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(map[string]any{"time": time.Now().UTC(), "sizes": b.sizesJSON(), "results": b.rows}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.outDir, "results.json"), data, 0o644)
}

func (b *bench) sizesJSON() map[string]any {
	return map[string]any{
		"distinct": b.sz.distinct, "burstCRs": b.sz.burstCRs, "burstPerCR": b.sz.burstPerCR,
		"steadyRate": b.sz.steadyRate, "steadySeconds": b.sz.steadyFor.Seconds(), "deployments": b.sz.deployments,
		"memSmall": b.sz.memSmall, "memLarge": b.sz.memLarge, "pollJobs": b.sz.pollJobs, "senders": b.sz.senders,
	}
}
