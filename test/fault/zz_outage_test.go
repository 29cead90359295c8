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

package fault

import (
	"net"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

// The outage spec stops envtest's API server and starts it again on the same
// port with the same certificates (BeforeSuite gives it a certificate
// directory of its own), so the suite's and the managers' clients reconnect
// as they would to a real API server coming back. Ginkgo shuffles top-level
// containers, so the other specs may run after this one: it does not return
// before the API server answers again.
var _ = Describe("API server outage", Ordered, func() {
	It("answers 503 while the API server is down and, after it is back, has lost and doubled nothing", func() {
		crs, steps := 4, 149
		if soak {
			crs, steps = 8, 499
		}
		f := newFixture("outage")
		jobs := f.runningFineTunes("job", crs)
		in := startIntake(nil)
		defer in.stop()
		waitCached(in, f, jobs)

		sent := workload(jobs, steps)
		now, later := chaos(interleave(sent), 0.1, 16, 0, 5)
		log := newLedger()
		s := newSender(func(int) string { return in.url }, log)
		// Stopping can take envtest's whole stop timeout (20 s) on a loaded
		// machine, and starting as long again: a delivery outlives both.
		s.patience = 4 * time.Minute
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			send(s, f.path, now, later, 8, 0)
		}()
		Eventually(func() int { log.mu.Lock(); defer log.mu.Unlock(); return len(log.final) }).Should(BeNumerically(">", len(now)/5), "waiting for a fifth of the stream to be answered")

		api := testEnv.ControlPlane.APIServer
		// On a loaded machine the API server may not drain its watches
		// within envtest's stop timeout; envtest then kills it, which is
		// as much an outage as a clean stop.
		if err := api.Stop(); err != nil {
			Expect(err.Error()).To(ContainSubstring("timeout waiting for process kube-apiserver to stop"))
		}
		Eventually(func() int { return log.retried(http.StatusServiceUnavailable) }, 30*time.Second).
			Should(BeNumerically(">", 0), "the endpoint must answer 503 while it cannot write")
		// After a stop timeout envtest has sent SIGKILL without waiting for
		// the process to go: wait until the port is free.
		apiAddr := api.SecureServing.Address + ":" + api.SecureServing.Port
		Eventually(func() error {
			c, err := net.DialTimeout("tcp", apiAddr, time.Second)
			if err == nil {
				_ = c.Close()
				return nil
			}
			return err
		}, 30*time.Second, 100*time.Millisecond).ShouldNot(Succeed(), "the old API server still holds %s", apiAddr)
		// A loaded machine may need longer than envtest's 20 s default to
		// bring kube-apiserver up; a failed attempt (say, the port briefly
		// taken) is retried.
		api.StartTimeout = 2 * time.Minute
		Eventually(api.Start, 5*time.Minute, time.Second).Should(Succeed(), "waiting for the API server to start again")
		Eventually(func() error {
			var l togetherv1.TogetherFineTuneList
			return k8s.List(ctx, &l, client.InNamespace(f.ns))
		}, 2*time.Minute).Should(Succeed(), "waiting for the API server to answer again")

		Eventually(done, 5*time.Minute).Should(BeClosed(), "waiting for the senders to finish")
		expectConverged(f, jobs, sent, log, false)
	})
})
