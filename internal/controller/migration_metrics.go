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
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// workloadsAtRisk counts, per TogetherModelMigration, the workloads still on
// the deprecated model after its sunset date: their requests fail, so an
// alert on this gauge above zero catches what the migration could not move.
var workloadsAtRisk = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "together_migration_workloads_at_risk",
	Help: "Workloads still using a deprecated model after its sunset date, per TogetherModelMigration.",
}, []string{"namespace", "migration"})

func init() {
	metrics.Registry.MustRegister(workloadsAtRisk)
}
