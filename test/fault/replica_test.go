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
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/together-operator/together-operator/internal/operator"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

// newSimulator starts the Together API a spec's replicas talk to. Each spec
// gets its own, closed when the spec ends: one shared across specs would be
// closed by the first spec's cleanup while later specs still need it.
func newSimulator() *togethersim.Server {
	GinkgoHelper()
	sim := togethersim.New(togethersim.Options{APIKey: "fault-key"})
	_, err := sim.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(sim.Close)
	return sim
}

// replica is a whole operator as the manager binary runs it: operator.Setup
// with leader election on, so reconcilers and the poller run on one replica
// while both serve the endpoint.
type replica struct {
	*intake
	mgr ctrl.Manager
}

func startReplica(s *togethersim.Server) *replica {
	GinkgoHelper()
	return startPollingReplica(s, time.Hour)
}

// startPollingReplica is startReplica with the poller's interval: the
// leader's poller reads the simulator every interval while work moves.
func startPollingReplica(s *togethersim.Server, interval time.Duration) *replica {
	GinkgoHelper()
	api, err := together.New(together.Options{BaseURL: s.URL(), APIKey: "fault-key"})
	Expect(err).NotTo(HaveOccurred())
	lease, renew, retry := 4*time.Second, 3*time.Second, 500*time.Millisecond
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Client: operator.ClientOptions(), Cache: operator.CacheOptions(),
		LeaderElection: true, LeaderElectionID: "fault-suite", LeaderElectionNamespace: "default",
		LeaderElectionReleaseOnCancel: true, LeaseDuration: &lease, RenewDeadline: &renew, RetryPeriod: &retry,
		// Two managers in one process register the same controller names;
		// in production each replica is its own process.
		Controller: withSkipNameValidation(operator.ControllerOptions()),
	})
	Expect(err).NotTo(HaveOccurred())
	parts, err := operator.Setup(mgr, operator.Config{API: api, BaseURL: s.URL(),
		EventsAddr: "127.0.0.1:0", PollInterval: interval, ModelsInterval: time.Hour})
	Expect(err).NotTo(HaveOccurred())
	return &replica{intake: runIntake(mgr, parts.Events), mgr: mgr}
}

// leaders counts the replicas that won the election.
func leaders(rs ...*replica) int {
	n := 0
	for _, r := range rs {
		select {
		case <-r.mgr.Elected():
			n++
		default:
		}
	}
	return n
}

// withSkipNameValidation lets a second manager in the same process register
// the controllers again, keeping the rest of the binary's settings.
func withSkipNameValidation(c config.Controller) config.Controller {
	c.SkipNameValidation = ptr.To(true)
	return c
}
