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

// Package manifests renders the install manifest (config/default, what
// `make build-installer` writes to dist/install.yaml) and checks the
// properties a cluster administrator relies on before installing it: least
// privilege RBAC and a hardened, highly available manager Deployment. A
// change that widens a permission or drops a safeguard fails here with a
// message naming it, instead of slipping through review.
package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// allowedVerbs is every permission the operator may hold, by "group/resource"
// ("core" is the core group). The verbs come from what the reconcilers, the
// leader election and the metrics authentication need; granting anything
// else must be a deliberate change to this list, reviewed as such.
var allowedVerbs = map[string][]string{
	// Batch inputs and outputs, fine-tune training data. list and watch
	// feed a metadata-only watch (names and versions, no data cached), so
	// that a ConfigMap a resource names wakes it when created or fixed.
	"core/configmaps": {"create", "get", "list", "patch", "update", "watch"},
	// Fetch Job pods are looked up to report why a fetch failed.
	"core/pods": {"get", "list"},
	// Secrets are read one by one by name (webhook signing secrets, API
	// keys, the batch fetch Job's key Secret, which the user creates and the
	// Job references: the operator never copies a key). list and watch feed
	// a metadata-only watch whose cache strips annotations, labels and
	// managed fields (operator.StripSecretMetadata; internal/operator's
	// cache spec checks it), so that creating a missing Secret or rotating
	// a key wakes the resources that read it instead of a recheck timer.
	// Never create, update, patch or delete (the operator would hold every
	// credential it could write).
	"core/secrets": {"get", "list", "watch"},
	// Migration and deploy patch the model of named workloads; the
	// migration lists them by label selector. Fine-tunes watch Deployments'
	// metadata only (a fine-tune waiting for its target submits when it
	// appears; a holder learns it lost the env var). Never update, create
	// or delete workloads.
	"apps/deployments":  {"get", "list", "patch", "watch"},
	"apps/statefulsets": {"get", "list", "patch"},
	// Batch output fetch Jobs (the cache holds only the operator's own).
	"batch/jobs": {"create", "delete", "get", "list", "watch"},
	// A namespace's label says whether it may use the operator-wide key;
	// its metadata is watched so that the label takes effect at once.
	"core/namespaces": {"get", "list", "watch"},
	// A fetch Job mounts a claim only after its opt-in annotation is read;
	// claims are watched metadata-only, so that the opt-in (or the claim
	// being created) wakes the batch that writes to it.
	"core/persistentvolumeclaims": {"get", "list", "watch"},
	// Fetch Jobs run as a token-less ServiceAccount the operator creates in
	// the batch's namespace; it never binds a role to it.
	"core/serviceaccounts":       {"create", "get"},
	"events.k8s.io/events":       {"create", "patch"},
	"coordination.k8s.io/leases": {"create", "delete", "get", "list", "patch", "update", "watch"},
	// Secure metrics: check the scraper's token and permission.
	"authentication.k8s.io/tokenreviews":                  {"create"},
	"authorization.k8s.io/subjectaccessreviews":           {"create"},
	"together.ai/togetherbatches":                         {"create", "delete", "get", "list", "patch", "update", "watch"},
	"together.ai/togetherfinetunes":                       {"create", "delete", "get", "list", "patch", "update", "watch"},
	"together.ai/togethermodelmigrations":                 {"create", "delete", "get", "list", "patch", "update", "watch"},
	"together.ai/togetherwebhooksubscriptions":            {"create", "delete", "get", "list", "patch", "update", "watch"},
	"together.ai/togetherbatches/status":                  {"get", "patch", "update"},
	"together.ai/togetherfinetunes/status":                {"get", "patch", "update"},
	"together.ai/togethermodelmigrations/status":          {"get", "patch", "update"},
	"together.ai/togetherwebhooksubscriptions/status":     {"get", "patch", "update"},
	"together.ai/togetherbatches/finalizers":              {"update"},
	"together.ai/togetherfinetunes/finalizers":            {"update"},
	"together.ai/togethermodelmigrations/finalizers":      {"update"},
	"together.ai/togetherwebhooksubscriptions/finalizers": {"update"},
}

// manifest is the rendered config/default, split by kind.
type manifest struct {
	all          []*unstructured.Unstructured
	roles        map[string][]rbacv1.PolicyRule // "Role ns/name" or "ClusterRole name"
	bindings     []binding
	deployments  []appsv1.Deployment
	services     []corev1.Service
	namespaces   []string
	crds         []string
	serviceAccts []string
}

type binding struct {
	kind     string
	name     string
	roleRef  rbacv1.RoleRef
	subjects []rbacv1.Subject
}

func kustomize(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("KUSTOMIZE")
	if bin == "" {
		bin = filepath.Join("..", "..", "bin", "kustomize")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("kustomize not found at %s: run `make kustomize` (make test does this)", abs)
	}
	return abs
}

// rendered caches one `kustomize build` for all tests of the package.
var rendered struct {
	once sync.Once
	out  []byte
	err  error
}

// render runs `kustomize build config/default` and decodes the result.
func render(t *testing.T) *manifest {
	t.Helper()
	bin := kustomize(t)
	rendered.once.Do(func() {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			rendered.err = err
			return
		}
		cmd := exec.Command(bin, "build", filepath.Join(root, "config", "default"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		rendered.out, rendered.err = cmd.Output()
		if rendered.err != nil {
			rendered.err = fmt.Errorf("%w\n%s", rendered.err, stderr.String())
		}
	})
	if rendered.err != nil {
		t.Fatalf("kustomize build config/default: %v", rendered.err)
	}
	out := rendered.out
	m := &manifest{roles: map[string][]rbacv1.PolicyRule{}}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("decoding the rendered manifest: %v", err)
		}
		if obj == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		m.all = append(m.all, u)
		switch u.GetKind() {
		case "Role", "ClusterRole":
			var r rbacv1.ClusterRole // Role has the same rules field.
			fromUnstructured(t, u, &r)
			key := u.GetKind() + " " + u.GetName()
			if u.GetNamespace() != "" {
				key = u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
			}
			m.roles[key] = r.Rules
		case "RoleBinding", "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			fromUnstructured(t, u, &b)
			m.bindings = append(m.bindings, binding{kind: u.GetKind(), name: u.GetName(), roleRef: b.RoleRef, subjects: b.Subjects})
		case "Deployment":
			var d appsv1.Deployment
			fromUnstructured(t, u, &d)
			m.deployments = append(m.deployments, d)
		case "Service":
			var s corev1.Service
			fromUnstructured(t, u, &s)
			m.services = append(m.services, s)
		case "Namespace":
			m.namespaces = append(m.namespaces, u.GetName())
		case "CustomResourceDefinition":
			m.crds = append(m.crds, u.GetName())
		case "ServiceAccount":
			m.serviceAccts = append(m.serviceAccts, u.GetNamespace()+"/"+u.GetName())
		}
	}
	return m
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

func TestInstallManifestHoldsEverythingToRun(t *testing.T) {
	m := render(t)
	if len(m.namespaces) != 1 {
		t.Fatalf("want exactly one Namespace in the manifest, got %v", m.namespaces)
	}
	ns := m.namespaces[0]
	for _, u := range m.all {
		switch u.GetKind() {
		case "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding":
			continue
		}
		if u.GetNamespace() != ns {
			t.Errorf("%s %s is in namespace %q, not the operator's %q", u.GetKind(), u.GetName(), u.GetNamespace(), ns)
		}
	}
	for _, want := range []string{"togetherbatches", "togetherfinetunes", "togethermodelmigrations", "togetherwebhooksubscriptions"} {
		if !slices.Contains(m.crds, want+".together.ai") {
			t.Errorf("CRD %s.together.ai is missing from the manifest (have %v)", want, m.crds)
		}
	}
	if len(m.serviceAccts) != 1 {
		t.Errorf("want one ServiceAccount for the manager, got %v", m.serviceAccts)
	}
}

func TestRBACHasNoWildcards(t *testing.T) {
	m := render(t)
	for role, rules := range m.roles {
		for _, r := range rules {
			for field, values := range map[string][]string{"verbs": r.Verbs, "resources": r.Resources, "apiGroups": r.APIGroups, "nonResourceURLs": r.NonResourceURLs, "resourceNames": r.ResourceNames} {
				for _, v := range values {
					if strings.Contains(v, "*") {
						t.Errorf("%s has a wildcard %q in %s: list what is needed instead", role, v, field)
					}
				}
			}
		}
	}
}

func TestRBACGrantsOnlyWhatTheOperatorNeeds(t *testing.T) {
	m := render(t)
	if len(m.roles) == 0 {
		t.Fatal("the manifest holds no Role or ClusterRole")
	}
	for role, rules := range m.roles {
		for _, r := range rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					group := g
					if group == "" {
						group = "core"
					}
					key := group + "/" + res
					allowed, known := allowedVerbs[key]
					if !known {
						t.Errorf("%s grants %v on %s, which the operator has never needed: if it must, add it to allowedVerbs in test/manifests with the reason", role, r.Verbs, key)
						continue
					}
					for _, v := range r.Verbs {
						if !slices.Contains(allowed, v) {
							t.Errorf("%s widens %s with verb %q (allowed: %v): if it must, add it to allowedVerbs in test/manifests with the reason", role, key, v, allowed)
						}
					}
				}
			}
		}
	}
}

// TestSecretsAreOnlyRead is the rule called out on its own because
// widening it is the costliest mistake: a grant to write Secrets would let
// the operator mint or overwrite any credential of the cluster. (list and
// watch feed the metadata-only Secret watch; what its cache keeps is
// checked in internal/operator.)
func TestSecretsAreOnlyRead(t *testing.T) {
	m := render(t)
	for role, rules := range m.roles {
		for _, r := range rules {
			if !slices.Contains(r.APIGroups, "") || !slices.Contains(r.Resources, "secrets") {
				continue
			}
			for _, v := range r.Verbs {
				if v != "get" && v != "list" && v != "watch" {
					t.Errorf("%s grants %q on Secrets: the operator only reads Secrets", role, v)
				}
			}
		}
	}
}

func TestRoleBindingsOnlyBindTheManager(t *testing.T) {
	m := render(t)
	if len(m.serviceAccts) != 1 {
		t.Fatalf("want one ServiceAccount, got %v", m.serviceAccts)
	}
	sa := m.serviceAccts[0]
	for _, b := range m.bindings {
		roleKey := b.roleRef.Kind + " " + b.roleRef.Name
		if b.roleRef.Kind == "Role" {
			roleKey = ""
			for k := range m.roles {
				if strings.HasPrefix(k, "Role ") && strings.HasSuffix(k, "/"+b.roleRef.Name) {
					roleKey = k
				}
			}
		}
		if _, ok := m.roles[roleKey]; !ok {
			t.Errorf("%s %s binds %s %s, which the manifest does not define (a built-in role such as cluster-admin?)", b.kind, b.name, b.roleRef.Kind, b.roleRef.Name)
		}
		for _, s := range b.subjects {
			if s.Kind != "ServiceAccount" || s.Namespace+"/"+s.Name != sa {
				t.Errorf("%s %s binds %s %s/%s; only the manager's ServiceAccount %s may be bound", b.kind, b.name, s.Kind, s.Namespace, s.Name, sa)
			}
		}
	}
}

// managerDeployment returns the manager's Deployment and its container.
func managerDeployment(t *testing.T, m *manifest) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	if len(m.deployments) != 1 {
		t.Fatalf("want one Deployment (the manager), got %d", len(m.deployments))
	}
	d := &m.deployments[0]
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == "manager" {
			return d, c
		}
	}
	t.Fatalf("Deployment %s has no container named manager", d.Name)
	return nil, nil
}

func TestManagerDeploymentIsHighlyAvailable(t *testing.T) {
	m := render(t)
	d, c := managerDeployment(t, m)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("Deployment %s: want 2 replicas (both serve events, one leads), got %v", d.Name, ptrString(d.Spec.Replicas))
	}
	if !slices.Contains(c.Args, "--leader-elect") && !slices.Contains(c.Args, "--leader-elect=true") {
		t.Errorf("container manager lacks --leader-elect: two replicas would both run the reconcilers (args %v)", c.Args)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("container manager: want a liveness probe on /healthz, got %+v", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("container manager: want a readiness probe on /readyz, got %+v", c.ReadinessProbe)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("container manager has no %s request", res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("container manager has no %s limit", res)
		}
	}
	if c.Image == "" || strings.HasPrefix(c.Image, "controller:") {
		t.Errorf("container manager image %q was not set by kustomize's images", c.Image)
	}
	var opImage string
	for _, e := range c.Env {
		if e.Name == "OPERATOR_IMAGE" {
			opImage = e.Value
		}
	}
	if opImage != c.Image {
		t.Errorf("env OPERATOR_IMAGE is %q but the manager runs %q: batch fetch Jobs would run a different image", opImage, c.Image)
	}
}

func TestManagerDeploymentIsHardened(t *testing.T) {
	m := render(t)
	d, c := managerDeployment(t, m)
	pod := d.Spec.Template.Spec.SecurityContext
	if pod == nil || pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if pod == nil || pod.SeccompProfile == nil || pod.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod securityContext.seccompProfile is not RuntimeDefault")
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("container manager has no securityContext")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container manager: readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container manager: allowPrivilegeEscalation is not false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("container manager is privileged")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container manager: want capabilities drop [ALL] and none added, got %+v", sc.Capabilities)
	}
	if d.Spec.Template.Spec.HostNetwork || d.Spec.Template.Spec.HostPID {
		t.Error("the manager pod uses the host's network or PID namespace")
	}
}

func TestServicesExposeEventsAndMetrics(t *testing.T) {
	m := render(t)
	d, c := managerDeployment(t, m)
	for _, want := range []struct {
		what string
		port int32
	}{{"events", 8090}, {"metrics", 8443}} {
		found := false
		for _, s := range m.services {
			for _, p := range s.Spec.Ports {
				if p.Port != want.port {
					continue
				}
				found = true
				if !selects(s.Spec.Selector, d.Spec.Template.Labels) {
					t.Errorf("Service %s (%s) selects %v, which does not match the manager pods' labels %v", s.Name, want.what, s.Spec.Selector, d.Spec.Template.Labels)
				}
				if got := containerPort(c, p.TargetPort); got != want.port {
					t.Errorf("Service %s port %d targets %s, which is container port %d, not %d", s.Name, p.Port, p.TargetPort.String(), got, want.port)
				}
			}
		}
		if !found {
			t.Errorf("no Service exposes the %s port %d", want.what, want.port)
		}
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func containerPort(c *corev1.Container, target intstr.IntOrString) int32 {
	if target.Type == intstr.Int {
		return target.IntVal
	}
	for _, p := range c.Ports {
		if p.Name == target.StrVal {
			return p.ContainerPort
		}
	}
	return 0
}

func ptrString(p *int32) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// TestNoNamespaceIsAllowedTheSharedKey checks the tenancy default: the
// install manifest lets no namespace use the operator-wide API key. Each
// namespace brings its own (the Secret together-api-key) until an
// administrator allows it by flag or by labelling the namespace.
func TestNoNamespaceIsAllowedTheSharedKey(t *testing.T) {
	m := render(t)
	_, c := managerDeployment(t, m)
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		if strings.HasPrefix(a, "--shared-api-key-namespaces") {
			t.Errorf("the manager is started with %q: the install manifest must allow no namespace the operator-wide key", a)
		}
	}
	for _, e := range c.Env {
		if e.Name == "TOGETHER_SHARED_API_KEY_NAMESPACES" {
			t.Errorf("the manager's env sets %s: the install manifest must allow no namespace the operator-wide key", e.Name)
		}
	}
	for _, u := range m.all {
		if u.GetKind() == "Namespace" && u.GetLabels()["together.ai/shared-api-key"] != "" {
			t.Errorf("Namespace %s is labelled for the operator-wide key by the install manifest", u.GetName())
		}
	}
}
