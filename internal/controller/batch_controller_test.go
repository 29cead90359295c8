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
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/intake"
	"github.com/together-operator/together-operator/internal/lattice"
	"github.com/together-operator/together-operator/internal/poller"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

const batchTestKey = "sim-key-batch"

// batchEnv is one test's simulator, namespace and reconciler.
type batchEnv struct {
	sim      *togethersim.Server
	api      *together.Client
	ns       string
	recorder *events.FakeRecorder
	r        *TogetherBatchReconciler
	// accounts, when set (withAccounts), resolves each batch's account as
	// the operator does.
	accounts *credentials.Resolver
}

// withAccounts makes the reconciler resolve each batch's account as the
// operator does: its spec.apiKeySecretRef, the namespace's together-api-key,
// or the operator-wide key (the simulator's) when shared allows the
// namespace.
func (e *batchEnv) withAccounts(shared bool) {
	e.accounts = &credentials.Resolver{Reader: k8sClient,
		NewClient: func(key string) (*together.Client, error) {
			return together.New(together.Options{BaseURL: e.sim.URL(), APIKey: key, MaxRetries: -1})
		},
		SharedKey: func(context.Context) (string, error) { return batchTestKey, nil }}
	if shared {
		e.accounts.SharedNamespaces = []string{e.ns}
	}
	e.r = e.reconciler(k8sClient)
}

func newBatchEnv() *batchEnv {
	sim := togethersim.New(togethersim.Options{APIKey: batchTestKey})
	_, err := sim.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(sim.Close)
	api, err := together.New(together.Options{BaseURL: sim.URL(), APIKey: batchTestKey, MaxRetries: -1})
	Expect(err).NotTo(HaveOccurred())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "batch-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	e := &batchEnv{sim: sim, api: api, ns: ns.Name, recorder: events.NewFakeRecorder(100)}
	e.r = e.reconciler(k8sClient)
	return e
}

// reconciler builds a fresh reconciler, as a restarted operator would.
func (e *batchEnv) reconciler(c client.Client) *TogetherBatchReconciler {
	access := TogetherAccess[BatchAPI]{API: e.api}
	if e.accounts != nil {
		access.Accounts = e.accounts
	}
	return &TogetherBatchReconciler{
		Client: c, Recorder: e.recorder, TogetherAccess: access,
		BaseURL: e.sim.URL(), Image: "registry.example/together-operator:test",
		check: batchOwnership.check(batchStatusOf),
	}
}

func (e *batchEnv) inputConfigMap(name string, lines ...string) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Data:       map[string]string{"requests.jsonl": strings.Join(lines, "\n") + "\n"},
	}
	Expect(k8sClient.Create(ctx, cm)).To(Succeed())
}

func chatRequest(id, content string) string {
	return fmt.Sprintf(`{"custom_id":%q,"body":{"messages":[{"role":"user","content":%q}]}}`, id, content)
}

func (e *batchEnv) create(name string, spec togetherv1.TogetherBatchSpec) client.ObjectKey {
	tb := &togetherv1.TogetherBatch{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}, Spec: spec}
	Expect(k8sClient.Create(ctx, tb)).To(Succeed())
	return client.ObjectKeyFromObject(tb)
}

func (e *batchEnv) get(key client.ObjectKey) *togetherv1.TogetherBatch {
	tb := &togetherv1.TogetherBatch{}
	Expect(k8sClient.Get(ctx, key, tb)).To(Succeed())
	return tb
}

func (e *batchEnv) reconcile(key client.ObjectKey) (ctrl.Result, error) {
	return e.r.Reconcile(ctx, ctrl.Request{NamespacedName: key})
}

// intake is the real event intake fed by the poller: for each of the
// batch's remote batches it builds the event the poller builds from
// Together's answer (poller.BatchEvent, with the poller's event IDs) and
// hands it to the real apply step, which aggregates parts as it does in
// the operator.
func (e *batchEnv) intake(key client.ObjectKey) {
	tb := e.get(key)
	ids := []string{tb.Status.BatchID}
	if len(tb.Status.Parts) > 0 {
		ids = ids[:0]
		for _, p := range tb.Status.Parts {
			ids = append(ids, p.BatchID)
		}
	}
	applier := &intake.Applier{Client: k8sClient, Reader: k8sClient}
	for _, id := range ids {
		b, err := e.api.GetBatch(ctx, id)
		Expect(err).NotTo(HaveOccurred())
		res := applier.ApplyTo(ctx, intake.KindBatch, key, poller.BatchEvent(b))
		Expect(res.Outcome).NotTo(Equal(lattice.Failed), "applying the polled state of batch %s: %v", id, res.Err)
	}
}

// runToEnd reconciles, advances the simulator and applies its state until
// the batch has ended, then reconciles once more to act on the ending.
func (e *batchEnv) runToEnd(key client.ObjectKey) *togetherv1.TogetherBatch {
	for range 12 {
		_, err := e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		if e.get(key).Status.Phase.IsTerminal() {
			break
		}
		e.sim.Advance()
		e.intake(key)
	}
	_, err := e.reconcile(key)
	Expect(err).NotTo(HaveOccurred())
	return e.get(key)
}

func (e *batchEnv) drainEvents() []string {
	var out []string
	for {
		select {
		case ev := <-e.recorder.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func batchCond(tb *togetherv1.TogetherBatch, t string) *metav1.Condition {
	return apimeta.FindStatusCondition(tb.Status.Conditions, t)
}

func configMapInput(name string) *togetherv1.BatchInput {
	return &togetherv1.BatchInput{ConfigMapRef: &togetherv1.ConfigMapKeyRef{Name: name, Key: "requests.jsonl"}}
}

func outputIDs(data string) []string {
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(data), "\n") {
		var l struct {
			CustomID string `json:"custom_id"`
		}
		Expect(json.Unmarshal([]byte(line), &l)).To(Succeed())
		ids = append(ids, l.CustomID)
	}
	return ids
}

// failNthCreate fails the n-th batch creation with a 500, as a create that
// Together refused without acting on it.
type failNthCreate struct {
	BatchAPI
	n, calls int
}

func (f *failNthCreate) CreateBatch(ctx context.Context, req together.CreateBatchRequest) (*together.Batch, error) {
	f.calls++
	if f.calls == f.n {
		return nil, &together.APIError{StatusCode: 500, Operation: "CreateBatch", Message: "injected"}
	}
	return f.BatchAPI.CreateBatch(ctx, req)
}

var _ = Describe("TogetherBatch", func() {
	It("submits a ConfigMap input, writes a verified ConfigMap output and counts tokens once across duplicates and restarts", func() {
		e := newBatchEnv()
		e.inputConfigMap("reqs", chatRequest("q1", "one"), chatRequest("q2", "two"), chatRequest("q3", "three"))
		const model = "model-counted-once"
		key := e.create("summaries", togetherv1.TogetherBatchSpec{
			Input: configMapInput("reqs"), Model: model,
			Output: &togetherv1.BatchOutput{ConfigMap: &togetherv1.ConfigMapOutput{Name: "summaries-out"}},
		})
		tb := e.runToEnd(key)

		Expect(tb.Status.Phase).To(Equal(togetherv1.BatchSucceeded))
		Expect(e.sim.CountCalls("POST", "/v1/batches")).To(Equal(1))
		out := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "summaries-out"}, out)).To(Succeed())
		sum := sha256.Sum256([]byte(out.Data[OutputKey]))
		Expect(tb.Status.Output).NotTo(BeNil())
		Expect(tb.Status.Output.SHA256).To(Equal(hex.EncodeToString(sum[:])))
		Expect(tb.Status.Output.Bytes).To(Equal(int64(len(out.Data[OutputKey]))))
		Expect(tb.Status.Output.Records).To(Equal(int64(3)))
		Expect(outputIDs(out.Data[OutputKey])).To(Equal([]string{"q1", "q2", "q3"}))
		Expect(out.OwnerReferences).To(HaveLen(1))
		Expect(out.OwnerReferences[0].UID).To(Equal(tb.UID))
		Expect(batchCond(tb, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionTrue))
		Expect(batchCond(tb, togetherv1.OutputReadyCondition).Status).To(Equal(metav1.ConditionTrue))
		Expect(batchCond(tb, togetherv1.ReconcilingCondition)).To(BeNil())
		Expect(batchCond(tb, togetherv1.StalledCondition)).To(BeNil())
		Expect(tb.Status.ObservedGeneration).To(Equal(tb.Generation))

		By("tokens come from the output lines' usage, counted once")
		want := usageOfLines(out.Data[OutputKey])
		Expect(want.TotalTokens).To(BeNumerically(">", 0))
		Expect(tb.Status.Usage).To(HaveValue(Equal(want)))
		Expect(tb.Status.AccountedTokens).To(Equal(want.TotalTokens))
		counter := batchTokensTotal.WithLabelValues(e.ns, model)
		Expect(testutil.ToFloat64(counter)).To(Equal(float64(want.TotalTokens)))

		By("a duplicate batch.done and a restarted operator")
		e.intake(key)
		_, err := e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		e.r = e.reconciler(k8sClient)
		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(testutil.ToFloat64(counter)).To(Equal(float64(want.TotalTokens)))
		Expect(e.get(key).Status.Usage).To(HaveValue(Equal(want)))
		Expect(e.drainEvents()).To(ContainElement(ContainSubstring("Normal Succeeded")))
	})

	It("rejects an invalid input line with its number and uploads nothing", func() {
		e := newBatchEnv()
		e.inputConfigMap("bad", chatRequest("a", "x"), `{"custom_id":"b","body":{"messages":[]}}`, chatRequest("c", "y"))
		key := e.create("bad", togetherv1.TogetherBatchSpec{Input: configMapInput("bad"), Model: "m"})
		_, err := e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())

		tb := e.get(key)
		stalled := batchCond(tb, togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonInvalidInput))
		Expect(stalled.Message).To(ContainSubstring("Line 2"))
		Expect(stalled.Message).To(ContainSubstring("messages is empty"))
		Expect(batchCond(tb, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionFalse))
		Expect(e.sim.CountCalls("POST", "/v1/files/upload")).To(BeZero())
		Expect(e.sim.CountCalls("POST", "/v1/batches")).To(BeZero())
		evs := e.drainEvents()
		Expect(evs).To(HaveLen(1), "one Warning, not one per reconcile")
		Expect(evs[0]).To(HavePrefix("Warning InvalidInput"))
	})

	It("adopts an existing batch by ID without creating one", func() {
		e := newBatchEnv()
		in := e.sim.AddFile("theirs.jsonl", "batch-api", []byte(chatRequest("z", "z")+"\n"))
		e.sim.AddBatch(togethersim.Batch{ID: "batch-existing", InputFileID: in.ID, Status: "IN_PROGRESS", Progress: 40, Endpoint: "/v1/chat/completions"})
		key := e.create("adopted", togetherv1.TogetherBatchSpec{BatchID: "batch-existing"})
		_, err := e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		tb := e.get(key)
		Expect(tb.Status.BatchID).To(Equal("batch-existing"))
		Expect(tb.Status.Phase).To(Equal(togetherv1.BatchInProgress))
		Expect(tb.Status.Progress).To(Equal(int32(40)))
		Expect(batchCond(tb, togetherv1.ReconcilingCondition).Status).To(Equal(metav1.ConditionTrue))
		Expect(e.sim.CountCalls("POST", "/v1/batches")).To(BeZero())
	})

	It("splits the input into parts, follows them all and merges outputs in input order, counting failed requests", func() {
		e := newBatchEnv()
		var lines, want []string
		for i := range 7 {
			id := fmt.Sprintf("req-%d", i)
			content := "question " + id
			if i == 4 {
				content = "please fail this one"
			} else {
				want = append(want, id)
			}
			lines = append(lines, chatRequest(id, content))
		}
		e.inputConfigMap("many", lines...)
		key := e.create("split", togetherv1.TogetherBatchSpec{
			Input: configMapInput("many"), Model: "m", MaxRequestsPerBatch: 3,
			Output: &togetherv1.BatchOutput{ConfigMap: &togetherv1.ConfigMapOutput{Name: "split-out"}},
		})
		tb := e.runToEnd(key)

		Expect(tb.Status.Parts).To(HaveLen(3))
		Expect(e.sim.CountCalls("POST", "/v1/batches")).To(Equal(3))
		for i, p := range tb.Status.Parts {
			Expect(p.Index).To(Equal(int32(i)))
			Expect(p.BatchID).NotTo(BeEmpty())
			Expect(p.Phase).To(Equal(togetherv1.BatchSucceeded))
		}
		Expect([]int32{tb.Status.Parts[0].Requests, tb.Status.Parts[1].Requests, tb.Status.Parts[2].Requests}).To(Equal([]int32{3, 3, 1}))
		Expect(tb.Status.Phase).To(Equal(togetherv1.BatchSucceeded))
		Expect(tb.Status.Progress).To(Equal(int32(100)))
		Expect(tb.Status.Output.Records).To(Equal(int64(6)))
		Expect(tb.Status.Output.FailedRecords).To(Equal(int64(1)))

		out := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "split-out"}, out)).To(Succeed())
		Expect(outputIDs(out.Data[OutputKey])).To(Equal(want))
		Expect(outputIDs(out.Data[ErrorsKey])).To(Equal([]string{"req-4"}))
		Expect(tb.Status.Usage).To(HaveValue(Equal(usageOfLines(out.Data[OutputKey]))), "every part's lines, each once")
	})

	It("creates one batch even when the status write after the create fails", func() {
		e := newBatchEnv()
		e.inputConfigMap("crash", chatRequest("a", "x"), chatRequest("b", "y"))
		key := e.create("crash", togetherv1.TogetherBatchSpec{Input: configMapInput("crash"), Model: "m"})

		var mu sync.Mutex
		failed := false
		base, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme.Scheme})
		Expect(err).NotTo(HaveOccurred())
		flaky := interceptor.NewClient(base, interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				mu.Lock()
				defer mu.Unlock()
				if !failed && e.sim.CountCalls("POST", "/v1/batches") > 0 {
					failed = true
					return apierrors.NewServiceUnavailable("injected: status write lost after the batch was created")
				}
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		})
		e.r = e.reconciler(flaky)
		_, err = e.reconcile(key)
		Expect(err).To(HaveOccurred())
		Expect(failed).To(BeTrue())
		tb := e.get(key)
		Expect(tb.Status.BatchID).To(BeEmpty())
		Expect(tb.Status.Submission).NotTo(BeNil())

		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		tb = e.get(key)
		Expect(tb.Status.BatchID).NotTo(BeEmpty())
		Expect(tb.Status.Submission).To(BeNil())
		Expect(e.sim.CountCalls("POST", "/v1/batches")).To(Equal(1))
		Expect(e.sim.CountCalls("POST", "/v1/files/upload")).To(Equal(1))
	})

	It("finds the batch of a submission interrupted under the tag of an earlier version, and tags new uploads with the namespace", func() {
		e := newBatchEnv()
		e.inputConfigMap("legacy", chatRequest("a", "x"), chatRequest("b", "y"))
		key := e.create("legacy", togetherv1.TogetherBatchSpec{Input: configMapInput("legacy"), Model: "m"})
		tb := e.get(key)
		chunks, err := e.r.readBatchInput(ctx, tb)
		Expect(err).NotTo(HaveOccurred())
		// What an earlier version left behind: a marker with its tag (no
		// namespace in it), the upload named after it and the batch created
		// from that upload, but no recorded batch ID.
		oldTag := fmt.Sprintf("tbatch-%s-a1-%s", tb.UID, inputDigest(chunks))
		f, err := e.api.UploadFile(ctx, togetherv1.BatchPartFileName(oldTag, 0), together.FilePurposeBatch, bytes.NewReader(chunks[0].data))
		Expect(err).NotTo(HaveOccurred())
		earlier, err := e.api.CreateBatch(ctx, together.CreateBatchRequest{InputFileID: f.ID, Endpoint: "/v1/chat/completions", ModelID: "m"})
		Expect(err).NotTo(HaveOccurred())
		tb.Status.Submission = &togetherv1.SubmissionMarker{Attempt: 1, Tag: oldTag, StartedAt: metav1.Now()}
		tb.Status.Phase = togetherv1.BatchPending
		Expect(k8sClient.Status().Update(ctx, tb)).To(Succeed())

		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		tb = e.get(key)
		Expect(tb.Status.BatchID).To(Equal(earlier.ID), "the earlier version's batch is found through its tagged upload")
		Expect(tb.Status.Submission).To(BeNil())
		Expect(e.sim.CountCalls("POST", "/v1/batches")).To(Equal(1), "only the earlier version's create: nothing paid twice")
		Expect(e.sim.CountCalls("POST", "/v1/files/upload")).To(Equal(1))

		By("submitting a new batch: its upload names the namespace")
		e.inputConfigMap("fresh", chatRequest("c", "z"))
		key = e.create("fresh", togetherv1.TogetherBatchSpec{Input: configMapInput("fresh"), Model: "m"})
		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		tb = e.get(key)
		Expect(tb.Status.BatchID).NotTo(BeEmpty())
		b, err := e.api.GetBatch(ctx, tb.Status.BatchID)
		Expect(err).NotTo(HaveOccurred())
		in, err := e.api.GetFile(ctx, b.InputFileID)
		Expect(err).NotTo(HaveOccurred())
		Expect(in.Filename).To(HavePrefix(tb.SubmissionTag(1, "")[:len("tbatch-n")+8]))
		Expect(togetherv1.TaggedFor(in.Filename, e.ns)).To(BeTrue(), "upload %q names the namespace", in.Filename)
		Expect(togetherv1.TaggedFor(in.Filename, e.ns+"-other")).To(BeFalse())
	})

	It("submits the input as it is now when it grew after a create failed", func() {
		e := newBatchEnv()
		e.inputConfigMap("grows", chatRequest("a", "1"), chatRequest("b", "2"))
		key := e.create("grows", togetherv1.TogetherBatchSpec{Input: configMapInput("grows"), Model: "m"})
		e.r.API = &failNthCreate{BatchAPI: e.api, n: 1}
		_, err := e.reconcile(key)
		Expect(err).To(HaveOccurred(), "the create failed and is retried")
		Expect(e.get(key).Status.Submission).NotTo(BeNil())

		By("the input grows to six requests before the retry")
		cm := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "grows"}, cm)).To(Succeed())
		var six []string
		for i := range 6 {
			six = append(six, chatRequest(fmt.Sprintf("r%d", i), "x"))
		}
		cm.Data["requests.jsonl"] = strings.Join(six, "\n") + "\n"
		Expect(k8sClient.Update(ctx, cm)).To(Succeed())
		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())

		tb := e.get(key)
		Expect(tb.Status.Submission).To(BeNil())
		Expect(tb.Status.BatchID).NotTo(BeEmpty())
		Expect(e.sim.CountCalls("POST", "/v1/batches")).To(Equal(1))
		b, err := e.api.GetBatch(ctx, tb.Status.BatchID)
		Expect(err).NotTo(HaveOccurred())
		rc, err := e.api.DownloadFile(ctx, b.InputFileID)
		Expect(err).NotTo(HaveOccurred())
		defer rc.Close()
		data, err := io.ReadAll(rc)
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Count(string(data), "\n")).To(Equal(6), "the batch must hold all six requests, not the two of the first upload")
	})

	It("stalls instead of indexing past its plan when a split input grows after some parts were created", func() {
		e := newBatchEnv()
		var four, six []string
		for i := range 6 {
			if i < 4 {
				four = append(four, chatRequest(fmt.Sprintf("r%d", i), "x"))
			}
			six = append(six, chatRequest(fmt.Sprintf("r%d", i), "x"))
		}
		e.inputConfigMap("split-grows", four...)
		key := e.create("split-grows", togetherv1.TogetherBatchSpec{Input: configMapInput("split-grows"), Model: "m", MaxRequestsPerBatch: 2})
		e.r.API = &failNthCreate{BatchAPI: e.api, n: 2}
		_, err := e.reconcile(key)
		Expect(err).To(HaveOccurred())
		Expect(e.sim.CountCalls("POST", "/v1/batches")).To(Equal(1), "part 0 was created, part 1 failed")

		cm := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "split-grows"}, cm)).To(Succeed())
		cm.Data["requests.jsonl"] = strings.Join(six, "\n") + "\n"
		Expect(k8sClient.Update(ctx, cm)).To(Succeed())
		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())

		tb := e.get(key)
		stalled := batchCond(tb, togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonInputChanged))
		Expect(stalled.Message).To(ContainSubstring("1 of 2 parts"))
		Expect(tb.Status.Parts).To(HaveLen(2))
		Expect(tb.Status.Parts[0].BatchID).NotTo(BeEmpty(), "the batch that was paid for is followed")
		Expect(e.sim.CountCalls("POST", "/v1/batches")).To(Equal(1), "nothing is submitted from a plan the input no longer matches")
	})

	It("refuses an output too large for a ConfigMap and names the PVC option", func() {
		e := newBatchEnv()
		big := e.sim.AddGeneratedFile(2 << 20)
		in := e.sim.AddFile("in.jsonl", "batch-api", []byte(chatRequest("a", "x")+"\n"))
		e.sim.AddBatch(togethersim.Batch{ID: "batch-big", InputFileID: in.ID, Status: "COMPLETED", Progress: 100, OutputFileID: big.ID})
		key := e.create("big", togetherv1.TogetherBatchSpec{
			BatchID: "batch-big",
			Output:  &togetherv1.BatchOutput{ConfigMap: &togetherv1.ConfigMapOutput{Name: "big-out"}},
		})
		_, err := e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		tb := e.get(key)
		c := batchCond(tb, togetherv1.OutputReadyCondition)
		Expect(c).NotTo(BeNil())
		Expect(c.Reason).To(Equal(togetherv1.ReasonOutputTooLarge))
		Expect(c.Message).To(ContainSubstring("spec.output.persistentVolumeClaim"))
		Expect(batchCond(tb, togetherv1.StalledCondition).Reason).To(Equal(togetherv1.ReasonOutputTooLarge))
		err = k8sClient.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "big-out"}, &corev1.ConfigMap{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue())
		Expect(e.sim.CountCalls("GET", "/v1/files/"+big.ID+"/content")).To(BeZero(), "the declared size is checked before downloading")
	})

	It("writes a PVC output through a fetch Job that references the batch's own key Secret, reads its result and cleans up", func() {
		e := newBatchEnv()
		e.withAccounts(false)
		in := e.sim.AddFile("in.jsonl", "batch-api", []byte(chatRequest("a", "x")+"\n"))
		outFile := e.sim.AddFile("out.jsonl", "batch-generated", []byte(`{"custom_id":"a"}`+"\n"))
		e.sim.AddBatch(togethersim.Batch{ID: "batch-pvc", InputFileID: in.ID, Status: "COMPLETED", Progress: 100, OutputFileID: outFile.ID})
		// The batch acts with the Secret it names; its fetch Job reads the
		// same one, however the namespace's default is set up.
		key := e.create("to-volume", togetherv1.TogetherBatchSpec{
			BatchID:         "batch-pvc",
			APIKeySecretRef: &togetherv1.APIKeySecretRef{Name: "together-key", Key: "token"},
			Output:          &togetherv1.BatchOutput{PersistentVolumeClaim: &togetherv1.PVCOutput{ClaimName: "results", Path: "runs/out.jsonl"}},
		})
		jobKey := client.ObjectKey{Namespace: e.ns, Name: "to-volume-fetch"}

		By("a missing key Secret stalls the batch with the command to create it")
		res, err := e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.RequeueAfter).To(BeZero(), "no recheck timer: the Secret watch wakes the batch when the Secret is created")
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, jobKey, &batchv1.Job{}))).To(BeTrue())
		tb := e.get(key)
		Expect(tb.Status.FetchAttempts).To(BeZero())
		c := batchCond(tb, togetherv1.ReadyCondition)
		Expect(c.Status).To(Equal(metav1.ConditionFalse))
		Expect(c.Reason).To(Equal(togetherv1.ReasonAPIKeySecretNotFound))
		stalled := batchCond(tb, togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonAPIKeySecretNotFound))
		Expect(stalled.Message).To(ContainSubstring(e.ns + "/together-key"))
		Expect(stalled.Message).To(ContainSubstring("kubectl -n " + e.ns + " create secret generic together-key --from-literal=token="))
		Expect(batchCond(tb, togetherv1.ReconcilingCondition)).To(BeNil())
		Expect(e.drainEvents()).To(ContainElement(HavePrefix("Warning " + togetherv1.ReasonAPIKeySecretNotFound)))

		By("a Secret without the key is reported too")
		userSecret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "together-key", Namespace: e.ns},
			Data:       map[string][]byte{"other": []byte("x")},
		}
		Expect(k8sClient.Create(ctx, userSecret)).To(Succeed())
		res, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.RequeueAfter).To(BeZero(), "adding the key changes the Secret, which wakes the batch")
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, jobKey, &batchv1.Job{}))).To(BeTrue())
		stalled = batchCond(e.get(key), togetherv1.StalledCondition)
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonAPIKeySecretNotFound))
		Expect(stalled.Message).To(ContainSubstring(`no key "token"`))

		By("a claim that has not opted in is not mounted")
		userSecret.Data = map[string][]byte{"token": []byte(batchTestKey)}
		Expect(k8sClient.Update(ctx, userSecret)).To(Succeed())
		claim := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "results", Namespace: e.ns},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		}
		Expect(k8sClient.Create(ctx, claim)).To(Succeed())
		res, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.RequeueAfter).To(BeZero(), "no recheck timer: the claim's metadata is watched, so its opt-in wakes the batch")
		Expect(outputClaimNames(e.get(key))).To(ConsistOf("results"), "the claim watch's index names the output claim")
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, jobKey, &batchv1.Job{}))).To(BeTrue())
		stalled = batchCond(e.get(key), togetherv1.StalledCondition)
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonClaimNotOptedIn))
		Expect(stalled.Message).To(ContainSubstring("annotate pvc results " + togetherv1.BatchOutputOptInAnnotation + "=true"))

		By("once the claim opts in, the Job starts and reads the key from the batch's own Secret")
		claim.Annotations = map[string]string{togetherv1.BatchOutputOptInAnnotation: "true"}
		Expect(k8sClient.Update(ctx, claim)).To(Succeed())
		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())

		job := &batchv1.Job{}
		Expect(k8sClient.Get(ctx, jobKey, job)).To(Succeed())
		pod := job.Spec.Template.Spec
		Expect(pod.Containers).To(HaveLen(1))
		ctr := pod.Containers[0]
		Expect(ctr.Image).To(Equal("registry.example/together-operator:test"))
		Expect(ctr.Args).To(Equal([]string{"fetch", "--part", "output=" + outFile.ID + ",input=" + in.ID, "--path", "/data/runs/out.jsonl", "--base-url", e.sim.URL()}))
		Expect(strings.Join(ctr.Args, " ")).NotTo(ContainSubstring(batchTestKey))
		Expect(ctr.Env).To(HaveLen(1))
		Expect(ctr.Env[0].Value).To(BeEmpty())
		Expect(ctr.Env[0].Name).To(Equal("TOGETHER_API_KEY"))
		Expect(ctr.Env[0].ValueFrom.SecretKeyRef.LocalObjectReference.Name).To(Equal("together-key"))
		Expect(ctr.Env[0].ValueFrom.SecretKeyRef.Key).To(Equal("token"))
		Expect(ctr.VolumeMounts).To(ConsistOf(corev1.VolumeMount{Name: "output", MountPath: "/data"}))
		Expect(pod.Volumes[0].PersistentVolumeClaim.ClaimName).To(Equal("results"))
		Expect(pod.RestartPolicy).To(Equal(corev1.RestartPolicyNever))
		Expect(job.Labels).To(HaveKeyWithValue(togetherv1.ManagedByLabel, togetherv1.ManagedByValue), "the manager's cache holds only labelled Jobs")
		Expect(pod.AutomountServiceAccountToken).To(Equal(ptr.To(false)), "the fetcher gets no Kubernetes token")
		Expect(pod.ServiceAccountName).To(Equal(togetherv1.FetchServiceAccount))
		fetchSA := &corev1.ServiceAccount{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: togetherv1.FetchServiceAccount}, fetchSA)).To(Succeed())
		Expect(fetchSA.AutomountServiceAccountToken).To(Equal(ptr.To(false)))
		Expect(*job.Spec.BackoffLimit).To(BeZero())
		Expect(metav1.IsControlledBy(job, e.get(key))).To(BeTrue())
		By("the operator created no Secret and left the user's untouched")
		secrets := &corev1.SecretList{}
		Expect(k8sClient.List(ctx, secrets, client.InNamespace(e.ns))).To(Succeed())
		Expect(secrets.Items).To(HaveLen(1))
		Expect(secrets.Items[0].Name).To(Equal("together-key"))
		Expect(secrets.Items[0].OwnerReferences).To(BeEmpty())
		Expect(secrets.Items[0].Data).To(Equal(map[string][]byte{"token": []byte(batchTestKey)}))
		tb = e.get(key)
		Expect(batchCond(tb, togetherv1.StalledCondition)).To(BeNil())
		Expect(tb.Status.FetchAttempts).To(Equal(int32(1)))
		Expect(batchCond(tb, togetherv1.ReconcilingCondition).Reason).To(Equal(togetherv1.ReasonFetching))

		By("the Job's Pod reporting what it wrote, as the fetch mode does")
		result := `{"bytes":18,"sha256":"` + strings.Repeat("ab", 32) + `","records":1,"errorBytes":0,"errorSHA256":"","failedRecords":0}`
		jobOwner := []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: ptr.To(true)}}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "to-volume-fetch-x", Namespace: e.ns, Labels: map[string]string{batchv1.JobNameLabel: job.Name}, OwnerReferences: jobOwner},
			Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "fetch", Image: ctr.Image}}},
		}
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		p.Status.Phase = corev1.PodSucceeded
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "fetch", Image: ctr.Image, State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Message: result, Reason: "Completed"}}}}
		Expect(k8sClient.Status().Update(ctx, p)).To(Succeed())
		now := metav1.Now()
		job.Status.StartTime = &now
		job.Status.CompletionTime = &now
		job.Status.Succeeded = 1
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
		Expect(k8sClient.Status().Update(ctx, job)).To(Succeed())

		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		tb = e.get(key)
		Expect(tb.Status.Output).NotTo(BeNil())
		Expect(tb.Status.Output.Location).To(Equal("pvc/results/runs/out.jsonl"))
		Expect(tb.Status.Output.SHA256).To(Equal(strings.Repeat("ab", 32)))
		Expect(tb.Status.Output.Records).To(Equal(int64(1)))
		Expect(batchCond(tb, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionTrue))
		Eventually(func() bool {
			j := &batchv1.Job{}
			err := k8sClient.Get(ctx, client.ObjectKeyFromObject(job), j)
			return apierrors.IsNotFound(err) || !j.DeletionTimestamp.IsZero()
		}).Should(BeTrue(), "waiting for the fetch Job to be deleted")
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(userSecret), &corev1.Secret{})).To(Succeed(), "the user's Secret is theirs to keep")
	})

	It("never hands the operator-wide key to a fetch Job: a namespace on the shared key gets a condition saying it needs its own Secret", func() {
		e := newBatchEnv()
		e.withAccounts(true)
		in := e.sim.AddFile("in.jsonl", "batch-api", []byte(chatRequest("a", "x")+"\n"))
		outFile := e.sim.AddFile("out.jsonl", "batch-generated", []byte(`{"custom_id":"a"}`+"\n"))
		e.sim.AddBatch(togethersim.Batch{ID: "batch-shared", InputFileID: in.ID, Status: "COMPLETED", Progress: 100, OutputFileID: outFile.ID})
		claim := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "results", Namespace: e.ns, Annotations: map[string]string{togetherv1.BatchOutputOptInAnnotation: "true"}},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		}
		Expect(k8sClient.Create(ctx, claim)).To(Succeed())
		key := e.create("shared", togetherv1.TogetherBatchSpec{BatchID: "batch-shared",
			Output: &togetherv1.BatchOutput{PersistentVolumeClaim: &togetherv1.PVCOutput{ClaimName: "results"}}})
		jobKey := client.ObjectKey{Namespace: e.ns, Name: "shared-fetch"}

		_, err := e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		tb := e.get(key)
		Expect(tb.Status.Phase).To(Equal(togetherv1.BatchSucceeded), "the batch itself runs on the operator-wide key")
		stalled := batchCond(tb, togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonOutputNeedsNamespaceKey))
		Expect(stalled.Message).To(ContainSubstring("kubectl -n " + e.ns + " create secret generic together-api-key"))
		Expect(batchCond(tb, togetherv1.OutputReadyCondition).Reason).To(Equal(togetherv1.ReasonOutputNeedsNamespaceKey))
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, jobKey, &batchv1.Job{}))).To(BeTrue(), "no Job was created")
		secrets := &corev1.SecretList{}
		Expect(k8sClient.List(ctx, secrets, client.InNamespace(e.ns))).To(Succeed())
		Expect(secrets.Items).To(BeEmpty(), "the operator-wide key was not copied into the namespace")

		By("the namespace getting its own key: the Job reads that Secret")
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: credentials.DefaultSecretName},
			Data: map[string][]byte{credentials.APIKeyKey: []byte(batchTestKey)}})).To(Succeed())
		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		job := &batchv1.Job{}
		Expect(k8sClient.Get(ctx, jobKey, job)).To(Succeed())
		ref := job.Spec.Template.Spec.Containers[0].Env[0].ValueFrom.SecretKeyRef
		Expect(ref.Name).To(Equal(credentials.DefaultSecretName))
		Expect(ref.Key).To(Equal(credentials.APIKeyKey))
	})

	It("refuses a deprecated output key Secret that is not the batch's own", func() {
		e := newBatchEnv()
		e.withAccounts(false)
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: credentials.DefaultSecretName},
			Data: map[string][]byte{credentials.APIKeyKey: []byte(batchTestKey)}})).To(Succeed())
		in := e.sim.AddFile("in.jsonl", "batch-api", []byte(chatRequest("a", "x")+"\n"))
		outFile := e.sim.AddFile("out.jsonl", "batch-generated", []byte(`{"custom_id":"a"}`+"\n"))
		e.sim.AddBatch(togethersim.Batch{ID: "batch-legacy", InputFileID: in.ID, Status: "COMPLETED", Progress: 100, OutputFileID: outFile.ID})
		key := e.create("legacy", togetherv1.TogetherBatchSpec{BatchID: "batch-legacy",
			Output: &togetherv1.BatchOutput{PersistentVolumeClaim: &togetherv1.PVCOutput{ClaimName: "results",
				APIKeySecretRef: &togetherv1.APIKeySecretRef{Name: "someone-elses-key"}}}})
		_, err := e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		stalled := batchCond(e.get(key), togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonOutputKeyMismatch))
		Expect(stalled.Message).To(And(ContainSubstring(`"someone-elses-key"`), ContainSubstring(`"together-api-key"`), ContainSubstring("spec.apiKeySecretRef")))
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "legacy-fetch"}, &batchv1.Job{}))).To(BeTrue())
	})

	It("neither trusts nor deletes a Job named like its fetch Job that it did not create", func() {
		// Issue 13, scenario 3: a tenant's own Job named <batch>-fetch, with a
		// Pod that reports a made-up result.
		e := newBatchEnv()
		in := e.sim.AddFile("in.jsonl", "batch-api", []byte(chatRequest("a", "x")+"\n"))
		outFile := e.sim.AddFile("out.jsonl", "batch-generated", []byte(`{"custom_id":"a"}`+"\n"))
		e.sim.AddBatch(togethersim.Batch{ID: "batch-foreign-job", InputFileID: in.ID, Status: "COMPLETED", Progress: 100, OutputFileID: outFile.ID})
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "k", Namespace: e.ns}, Data: map[string][]byte{"api-key": []byte("x")}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "results", Namespace: e.ns, Labels: map[string]string{togetherv1.BatchOutputOptInAnnotation: "true"}},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		})).To(Succeed())
		now := metav1.Now()
		foreign := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: "victim-fetch", Namespace: e.ns, Labels: map[string]string{togetherv1.ManagedByLabel: togetherv1.ManagedByValue}},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "x", Image: "example.com/x"}}}}},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())
		foreign.Status.StartTime, foreign.Status.CompletionTime, foreign.Status.Succeeded = &now, &now, 1
		foreign.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
		Expect(k8sClient.Status().Update(ctx, foreign)).To(Succeed())

		key := e.create("victim", togetherv1.TogetherBatchSpec{
			BatchID: "batch-foreign-job",
			Output:  &togetherv1.BatchOutput{PersistentVolumeClaim: &togetherv1.PVCOutput{ClaimName: "results"}},
		})
		tb := e.runToEnd(key)
		Expect(tb.Status.Output).To(BeNil(), "a stranger's Job result is not recorded")
		stalled := batchCond(tb, togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonOutputConflict))
		Expect(stalled.Message).To(ContainSubstring(`Job "victim-fetch" exists and was not created for this batch`))
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(foreign), &batchv1.Job{})).To(Succeed(), "the stranger's Job is not deleted")

		By("deleting the batch leaves the stranger's Job alone too")
		Expect(k8sClient.Delete(ctx, e.get(key))).To(Succeed())
		_, err := e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, key, &togetherv1.TogetherBatch{}))).To(BeTrue())
		j := &batchv1.Job{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(foreign), j)).To(Succeed())
		Expect(j.DeletionTimestamp.IsZero()).To(BeTrue())
	})

	It("reports an expired batch and still accounts its tokens", func() {
		e := newBatchEnv()
		e.sim.SetBatchScript(func(r togethersim.BatchRequest) bool { return r.ModelID == "slow-model" }, togethersim.BatchOutcome{Expire: true})
		e.inputConfigMap("slow", chatRequest("a", "x"))
		key := e.create("slow", togetherv1.TogetherBatchSpec{Input: configMapInput("slow"), Model: "slow-model"})
		tb := e.runToEnd(key)
		Expect(tb.Status.Phase).To(Equal(togetherv1.BatchExpired))
		stalled := batchCond(tb, togetherv1.StalledCondition)
		Expect(stalled).NotTo(BeNil())
		Expect(stalled.Reason).To(Equal(togetherv1.ReasonBatchExpired))
		Expect(stalled.Message).To(ContainSubstring("maxRequestsPerBatch"))
		Expect(batchCond(tb, togetherv1.ReadyCondition).Status).To(Equal(metav1.ConditionFalse))
		Expect(tb.Status.AccountedTokens).To(Equal(tb.Status.TotalTokens))
		Expect(e.drainEvents()).To(ContainElement(HavePrefix("Warning BatchExpired")))
	})

	It("cancels a running batch when deleted with deletionPolicy Cancel", func() {
		e := newBatchEnv()
		e.inputConfigMap("del", chatRequest("a", "x"))
		key := e.create("del", togetherv1.TogetherBatchSpec{Input: configMapInput("del"), Model: "m"})
		_, err := e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		id := e.get(key).Status.BatchID
		Expect(k8sClient.Delete(ctx, e.get(key))).To(Succeed())
		_, err = e.reconcile(key)
		Expect(err).NotTo(HaveOccurred())
		b, err := e.api.GetBatch(ctx, id)
		Expect(err).NotTo(HaveOccurred())
		Expect(b.Status).To(Equal(together.BatchCancelled))
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, key, &togetherv1.TogetherBatch{}))).To(BeTrue())
	})
})

// usageOfLines adds up response.body.usage of output lines with a generic
// decoder, independently of the fetcher.
func usageOfLines(data string) togetherv1.BatchUsage {
	var u togetherv1.BatchUsage
	for _, line := range strings.Split(strings.TrimSpace(data), "\n") {
		var l map[string]any
		ExpectWithOffset(1, json.Unmarshal([]byte(line), &l)).To(Succeed())
		us := l["response"].(map[string]any)["body"].(map[string]any)["usage"].(map[string]any)
		u.PromptTokens += int64(us["prompt_tokens"].(float64))
		u.CompletionTokens += int64(us["completion_tokens"].(float64))
		u.TotalTokens += int64(us["total_tokens"].(float64))
	}
	return u
}
