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
