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

package operator

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/together-operator/together-operator/internal/secretread"
	"github.com/together-operator/together-operator/internal/webhook"
	"github.com/together-operator/together-operator/pkg/push"
)

// secretGETs is the number of single-Secret GETs the API server has served
// since it started, from its own apiserver_request_total: whatever client
// made them, cached or not, they are counted here.
func secretGETs() float64 {
	GinkgoHelper()
	cs, err := kubernetes.NewForConfig(adminCfg)
	Expect(err).NotTo(HaveOccurred())
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	Expect(err).NotTo(HaveOccurred())
	var n float64
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `resource="secrets"`) ||
			!strings.Contains(line, `verb="GET"`) || !strings.Contains(line, `scope="resource"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		Expect(err).NotTo(HaveOccurred())
		n += v
	}
	Expect(sc.Err()).NotTo(HaveOccurred())
	return n
}

var _ = Describe("The events endpoint, wired as the manager binary wires it", func() {
	It("reads no Secret from the API server for deliveries it refuses", func() {
		ns := newNamespace()
		createSubscription(ns, "hooks", nil)
		createSubscription(ns, "orphan", nil)
		// The orphan's Secret is deleted: its subscription names a Secret
		// that does not exist.
		orphaned := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orphan-secret"}}
		Expect(k8s.Delete(ctx, orphaned)).To(Succeed())
		Eventually(func() bool {
			_, err := secretread.Metadata(ctx, mgr.GetCache(), client.ObjectKeyFromObject(orphaned))
			return apierrors.IsNotFound(err)
		}).Should(BeTrue(), "waiting for the manager's cache to see the Secret gone")

		body := func(i int) []byte {
			return []byte(fmt.Sprintf(`{"id":"bad-%d","type":"fine_tune.checkpoint","created_at":"2026-11-30T00:00:00Z","data":{"fine_tune_id":"ft-x","step":1}}`, i))
		}
		send := func(path string, i int) int {
			b := body(i)
			req, err := http.NewRequest(http.MethodPost, eventsURL+path, bytes.NewReader(b))
			Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Content-Type", "application/json")
			id, now := fmt.Sprint("bad-", i), time.Now()
			req.Header.Set(push.HeaderWebhookID, id)
			req.Header.Set(push.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
			req.Header.Set(push.HeaderWebhookSignature, push.Standard([]byte("a-guess"), id, now, b))
			resp, err := http.DefaultClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			return resp.StatusCode
		}
		before := secretGETs()
		for i := range 50 {
			Expect(send(webhook.PathFor(ns, "hooks"), i)).To(Equal(http.StatusUnauthorized), "a bad signature")
			Expect(send(webhook.PathFor(ns, "orphan"), i)).To(Equal(http.StatusUnauthorized), "a subscription whose Secret is missing")
		}
		// One read of the signing Secret's current version is allowed
		// (the first delivery to it); none per delivery.
		Expect(secretGETs()-before).To(BeNumerically("<=", 1), "Secret GETs the API server served for 100 refused deliveries")
	})
})
