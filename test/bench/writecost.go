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
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// writeMeter counts the status writes (PUT or PATCH of a .../status path)
// that go through a client, with their request bytes and client-side time,
// so that the bench can say what one event's write costs in bytes and
// milliseconds, not only in events per second.
type writeMeter struct {
	writes atomic.Int64
	bytes  atomic.Int64
	nanos  atomic.Int64
	// lats are the client-side times of the writes, in order, for
	// percentiles (a write's tail says whether a slow acknowledgement was
	// a slow write).
	mu   sync.Mutex
	lats []time.Duration
}

func (m *writeMeter) wrap(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Wrap(func(rt http.RoundTripper) http.RoundTripper { return meteredTransport{rt: rt, m: m} })
	return c
}

type meteredTransport struct {
	rt http.RoundTripper
	m  *writeMeter
}

func (t meteredTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if (req.Method != http.MethodPut && req.Method != http.MethodPatch) || !strings.HasSuffix(req.URL.Path, "/status") {
		return t.rt.RoundTrip(req)
	}
	n := req.ContentLength
	if n < 0 && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body, n = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	start := time.Now()
	resp, err := t.rt.RoundTrip(req)
	t.m.writes.Add(1)
	t.m.bytes.Add(n)
	d := time.Since(start)
	t.m.nanos.Add(int64(d))
	t.m.mu.Lock()
	t.m.lats = append(t.m.lats, d)
	t.m.mu.Unlock()
	return resp, err
}

type meterReading struct {
	writes, bytes, nanos int64
	lats                 int
}

func (m *writeMeter) read() meterReading {
	m.mu.Lock()
	defer m.mu.Unlock()
	return meterReading{m.writes.Load(), m.bytes.Load(), m.nanos.Load(), len(m.lats)}
}

// p99Since is the 99th percentile of the client-side times of the writes
// made after r0.
func (m *writeMeter) p99Since(r0 meterReading) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return percentile(m.lats[r0.lats:], 0.99)
}

// since returns the mean request bytes and client-side milliseconds of the
// writes made after r0.
func (m *writeMeter) since(r0 meterReading) (n int64, bytesPer, msPer float64) {
	r := m.read()
	n = r.writes - r0.writes
	if n == 0 {
		return 0, 0, 0
	}
	return n, float64(r.bytes-r0.bytes) / float64(n), float64(r.nanos-r0.nanos) / float64(n) / 1e6
}

// serverTimes is the API server's own apiserver_request_duration_seconds
// for status writes (PUT and PATCH of the status subresource), per
// resource: the time the API server spent on them, from its /metrics.
type serverTimes map[string]struct{ sum, count float64 }

func (b *bench) scrapeServerTimes(ctx context.Context) (serverTimes, error) {
	cs, err := kubernetes.NewForConfig(b.cfg)
	if err != nil {
		return nil, err
	}
	raw, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	out := serverTimes{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		isSum := strings.HasPrefix(line, "apiserver_request_duration_seconds_sum{")
		isCount := strings.HasPrefix(line, "apiserver_request_duration_seconds_count{")
		if !isSum && !isCount || !strings.Contains(line, `subresource="status"`) ||
			!(strings.Contains(line, `verb="PUT"`) || strings.Contains(line, `verb="PATCH"`)) {
			continue
		}
		res := label(line, "resource")
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		e := out[res]
		if isSum {
			e.sum += v
		} else {
			e.count += v
		}
		out[res] = e
	}
	return out, sc.Err()
}

func label(line, name string) string {
	i := strings.Index(line, name+`="`)
	if i < 0 {
		return ""
	}
	rest := line[i+len(name)+2:]
	return rest[:strings.IndexByte(rest, '"')]
}

// perWrite is the API server's mean milliseconds per status write of
// resource between two scrapes, and how many writes that mean is over.
func perWrite(before, after serverTimes, resource string) (float64, float64) {
	n := after[resource].count - before[resource].count
	if n <= 0 {
		return 0, 0
	}
	return (after[resource].sum - before[resource].sum) / n * 1000, n
}

// plainGVK is a tiny CRD without a schema (x-kubernetes-preserve-unknown-
// fields) and with a status subresource: the same write to it costs the API
// server only what a custom resource costs, with no structural validation,
// defaulting or CEL, so the ratio of a TogetherFineTune's write to it is
// what the fine-tune's schema costs.
var plainGVK = schema.GroupVersionKind{Group: "bench.together.ai", Version: "v1", Kind: "Plain"}

func (b *bench) installPlainCRD(ctx context.Context) error {
	yes := true
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "plains.bench.together.ai"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: plainGVK.Group, Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "plains", Singular: "plain", Kind: "Plain", ListKind: "PlainList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema:       &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &yes}},
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
			}},
		},
	}
	if err := b.k8s.Create(ctx, crd); err != nil {
		return err
	}
	return waitFor(ctx, time.Minute, func() bool {
		var got apiextensionsv1.CustomResourceDefinition
		if b.k8s.Get(ctx, client.ObjectKeyFromObject(crd), &got) != nil {
			return false
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				// The discovery of a new group reaches the client's REST
				// mapper lazily; a list proves the resource is served.
				l := &unstructured.UnstructuredList{}
				l.SetGroupVersionKind(plainGVK.GroupVersion().WithKind("PlainList"))
				return b.k8s.List(ctx, l, client.InNamespace("default")) == nil
			}
		}
		return false
	})
}

// plainCopies creates, for each fine-tune, a Plain with the same spec and
// status, so that a write to either is the same write to an object of the
// same size: only the schema differs.
func (b *bench) plainCopies(ctx context.Context, ns string, objs []*togetherv1.TogetherFineTune) ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, len(objs))
	err := parallel(len(objs), b.sz.writerPool, func(i int) error {
		content, err := json.Marshal(map[string]any{"spec": objs[i].Spec, "status": objs[i].Status})
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{}
		if err := json.Unmarshal(content, &u.Object); err != nil {
			return err
		}
		u.SetGroupVersionKind(plainGVK)
		u.SetNamespace(ns)
		u.SetName(objs[i].Name)
		status := u.Object["status"]
		if err := b.k8s.Create(ctx, u); err != nil {
			return err
		}
		u.Object["status"] = status
		if err := b.k8s.Status().Update(ctx, u); err != nil {
			return err
		}
		out[i] = u
		return nil
	})
	return out, err
}

// minimalPatch is the smallest write that changes a fine-tune's status: a
// JSON merge patch of one field.
func minimalPatch(i, round int) []byte {
	return fmt.Appendf(nil, `{"status":{"loss":%g}}`, 1.0/float64(3+i+round*7919))
}

// minimalBaseline writes a one-field status merge patch to each raw
// fine-tune and to a Plain copy of it, 16 writers, taking turns in slices of
// slice writes so that both meet the same API server. It returns the
// fine-tunes' rate and p99; the Plain figures are rows.
func (b *bench) minimalBaseline(ctx context.Context, ns string, objs []*togetherv1.TogetherFineTune) error {
	if err := b.installPlainCRD(ctx); err != nil {
		return fmt.Errorf("installing the schema-less CRD: %w", err)
	}
	plains, err := b.plainCopies(ctx, ns, objs)
	if err != nil {
		return fmt.Errorf("creating the schema-less copies: %w", err)
	}
	var plainMeter writeMeter
	ftMeter := &b.minMeter
	ftC, err := client.New(ftMeter.wrap(b.cfg), client.Options{Scheme: b.scheme})
	if err != nil {
		return err
	}
	plainC, err := client.New(plainMeter.wrap(b.cfg), client.Options{Scheme: b.scheme})
	if err != nil {
		return err
	}
	n := len(objs)
	ftLats, plainLats := make([]time.Duration, n), make([]time.Duration, n)
	var ftTime, plainTime time.Duration
	s0, err := b.scrapeServerTimes(ctx)
	if err != nil {
		return err
	}
	const slice = 250
	for from := 0; from < n; from += slice {
		to := min(from+slice, n)
		t := time.Now()
		if err := parallel(to-from, b.sz.senders, func(k int) error {
			i := from + k
			t := time.Now()
			err := ftC.Status().Patch(ctx, objs[i], client.RawPatch(types.MergePatchType, minimalPatch(i, 0)))
			ftLats[i] = time.Since(t)
			return err
		}); err != nil {
			return fmt.Errorf("minimal patch of a fine-tune: %w", err)
		}
		ftTime += time.Since(t)
		t = time.Now()
		if err := parallel(to-from, b.sz.senders, func(k int) error {
			i := from + k
			t := time.Now()
			err := plainC.Status().Patch(ctx, plains[i], client.RawPatch(types.MergePatchType, minimalPatch(i, 0)))
			plainLats[i] = time.Since(t)
			return err
		}); err != nil {
			return fmt.Errorf("minimal patch of a schema-less copy: %w", err)
		}
		plainTime += time.Since(t)
	}
	s1, err := b.scrapeServerTimes(ctx)
	if err != nil {
		return err
	}
	// Correctness: every patch landed (and the objects, updated in place
	// from the answers, hold the new resourceVersion for later writers).
	for i, ft := range objs {
		if ft.Status.Loss == nil || fmt.Sprintf(`{"status":{"loss":%g}}`, *ft.Status.Loss) != string(minimalPatch(i, 0)) {
			return fmt.Errorf("minimal patch of %s missing", ft.Name)
		}
	}
	b.minClient = ftC
	b.minRate = float64(n) / ftTime.Seconds()
	b.minP99 = percentile(ftLats, 0.99)
	plainRate, plainP99 := float64(n)/plainTime.Seconds(), percentile(plainLats, 0.99)
	b.add(row{Scenario: "minimal status patch (one field), 16 writers", Value: b.minRate, Unit: "writes/s", Goal: "baseline", Pass: true,
		Note: "takes turns with the same patch without schema in slices of 250"})
	b.add(row{Scenario: "minimal status patch p99, 16 writers", Value: ms(b.minP99), Unit: "ms", Goal: "baseline", Pass: true})
	b.add(row{Scenario: "minimal patch, CR without schema, 16 writers", Value: plainRate, Unit: "writes/s", Goal: "-", Pass: true,
		Note: "same content as the fine-tune, x-kubernetes-preserve-unknown-fields"})
	b.add(row{Scenario: "minimal patch p99, CR without schema", Value: ms(plainP99), Unit: "ms", Goal: "-", Pass: true})
	_, ftBytes, ftMs := ftMeter.since(meterReading{})
	_, plainBytes, _ := plainMeter.since(meterReading{})
	ftSrv, ftN := perWrite(s0, s1, "togetherfinetunes")
	plainSrv, plainN := perWrite(s0, s1, "plains")
	if ftN < float64(n) || plainN < float64(n) {
		return fmt.Errorf("the API server counted %.0f fine-tune and %.0f plain status writes, want at least %d each", ftN, plainN, n)
	}
	b.minServerMs = ftSrv
	b.add(row{Scenario: "write cost: minimal patch, request bytes", Value: ftBytes, Unit: "B", Goal: "-", Pass: true})
	b.add(row{Scenario: "write cost: minimal patch, client time", Value: ftMs, Unit: "ms", Goal: "-", Pass: true})
	b.add(row{Scenario: "write cost: minimal patch, API server time", Value: ftSrv, Unit: "ms", Goal: "-", Pass: true,
		Note: "apiserver_request_duration_seconds, status subresource"})
	b.add(row{Scenario: "write cost: minimal patch, CR without schema, API server time", Value: plainSrv, Unit: "ms", Goal: "-", Pass: true,
		Note: fmt.Sprintf("request %.0f B", plainBytes)})
	ratio := ftSrv / plainSrv
	b.add(row{Scenario: "schema cost: fine-tune minimal patch / same patch without schema (API server time)", Value: ftSrv, Unit: "ms",
		Baseline: plainSrv, Ratio: ratio, Goal: "ratio <= 1.5", Pass: ratio <= 1.5})
	return nil
}

// objectCost reports the stored size of a fine-tune as the API server
// returns it (the JSON etcd holds for a custom resource) and the bytes of
// the parts that grow with events.
func (b *bench) objectCost(ctx context.Context, ns, name, what string) error {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(togetherv1.GroupVersion.WithKind("TogetherFineTune"))
	if err := b.k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		return err
	}
	size := func(v any) float64 {
		if v == nil {
			return 0
		}
		data, _ := json.Marshal(v)
		return float64(len(data))
	}
	total := size(u.Object)
	status, _ := u.Object["status"].(map[string]any)
	meta, _ := u.Object["metadata"].(map[string]any)
	parts := []string{}
	for _, p := range []struct {
		name string
		v    any
	}{
		{"managedFields", meta["managedFields"]}, {"processedEvents", status["processedEvents"]}, {"checkpoints", status["checkpoints"]},
		{"conditions", status["conditions"]}, {"lastEvent", status["lastEvent"]},
	} {
		parts = append(parts, fmt.Sprintf("%s %.0f", p.name, size(p.v)))
	}
	b.add(row{Scenario: "write cost: stored object, " + what, Value: total, Unit: "B", Goal: "-", Pass: true, Note: strings.Join(parts, ", ")})
	fmt.Fprintf(os.Stderr, "   %s: %s\n", what, strings.Join(parts, ", "))
	return nil
}
