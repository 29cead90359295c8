package fault

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The outage spec lives in the last file so that it runs after the others:
// if the API server failed to come back, it would take them down with it.
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
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			send(s, f.path, now, later, 8, 0)
		}()
		Eventually(func() int { log.mu.Lock(); defer log.mu.Unlock(); return len(log.final) }).Should(BeNumerically(">", len(now)/5))

		api := testEnv.ControlPlane.APIServer
		// On a loaded machine the API server may not drain its watches
		// within envtest's stop timeout; envtest then kills it, which is
		// as much an outage as a clean stop.
		if err := api.Stop(); err != nil {
			Expect(err.Error()).To(ContainSubstring("timeout waiting for process kube-apiserver to stop"))
		}
		Eventually(func() int { return log.retried(http.StatusServiceUnavailable) }, 30*time.Second).
			Should(BeNumerically(">", 0), "the endpoint must answer 503 while it cannot write")
		Expect(api.Start()).To(Succeed())

		Eventually(done, 3*time.Minute).Should(BeClosed())
		expectConverged(f, jobs, sent, log, false)
	})
})
