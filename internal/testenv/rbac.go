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

package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// ManagerNamespace and ManagerServiceAccount are where the manager runs in
// the test cluster, as config/default installs it.
const (
	ManagerNamespace      = "together-operator-system"
	ManagerServiceAccount = "controller-manager"
)

// ManagerUser is the user name the API server sees for the manager's
// ServiceAccount.
func ManagerUser() string {
	return "system:serviceaccount:" + ManagerNamespace + ":" + ManagerServiceAccount
}

// readManifest decodes one YAML file of config/ into obj.
func readManifest(rel string, obj any) error {
	b, err := os.ReadFile(filepath.Join(RepoRoot(), "config", rel))
	if err != nil {
		return fmt.Errorf("reading config/%s: %w", rel, err)
	}
	if err := yaml.Unmarshal(b, obj); err != nil {
		return fmt.Errorf("decoding config/%s: %w", rel, err)
	}
	return nil
}

// AsManager installs the manager's RBAC exactly as config/rbac declares it
// (the generated ClusterRole manager-role and the leader election Role),
// binds it to the manager's ServiceAccount, and returns a copy of admin that
// impersonates that ServiceAccount. A manager started with it can do only
// what the install manifest grants: an informer or a verb outside the role
// fails the way it would in a cluster, instead of passing as the envtest
// administrator.
func AsManager(ctx context.Context, admin *rest.Config, c client.Client) (*rest.Config, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ManagerNamespace}}
	if err := createOrKeep(ctx, c, ns); err != nil {
		return nil, err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ManagerNamespace, Name: ManagerServiceAccount}}
	if err := createOrKeep(ctx, c, sa); err != nil {
		return nil, err
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ManagerNamespace, Name: ManagerServiceAccount}}

	role := &rbacv1.ClusterRole{}
	if err := readManifest("rbac/role.yaml", role); err != nil {
		return nil, err
	}
	if err := createOrKeep(ctx, c, role); err != nil {
		return nil, err
	}
	binding := &rbacv1.ClusterRoleBinding{}
	if err := readManifest("rbac/role_binding.yaml", binding); err != nil {
		return nil, err
	}
	binding.Subjects = subject
	if err := createOrKeep(ctx, c, binding); err != nil {
		return nil, err
	}
	le := &rbacv1.Role{}
	if err := readManifest("rbac/leader_election_role.yaml", le); err != nil {
		return nil, err
	}
	le.Namespace = ManagerNamespace
	if err := createOrKeep(ctx, c, le); err != nil {
		return nil, err
	}
	leb := &rbacv1.RoleBinding{}
	if err := readManifest("rbac/leader_election_role_binding.yaml", leb); err != nil {
		return nil, err
	}
	leb.Namespace, leb.Subjects = ManagerNamespace, subject
	if err := createOrKeep(ctx, c, leb); err != nil {
		return nil, err
	}

	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ManagerNamespace, "system:authenticated"}
	if err := waitAllowed(ctx, c, ManagerUser(), groups,
		authorizationv1.ResourceAttributes{Verb: "watch", Group: "together.ai", Resource: "togetherfinetunes"},
		authorizationv1.ResourceAttributes{Namespace: ManagerNamespace, Verb: "create", Group: "coordination.k8s.io", Resource: "leases"},
	); err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: ManagerUser(), Groups: groups}
	return cfg, nil
}

// AsTenant binds user, in namespace ns only, to the tenant role of
// config/rbac (what an administrator grants a team) plus the plain
// ConfigMap and Secret rights a team has in its own namespace, and returns
// a copy of admin that impersonates user. The user may not touch workloads
// or anything outside ns.
func AsTenant(ctx context.Context, admin *rest.Config, c client.Client, ns, user string) (*rest.Config, error) {
	editor := &rbacv1.ClusterRole{}
	if err := readManifest("rbac/tenant_editor_role.yaml", editor); err != nil {
		return nil, err
	}
	if err := createOrKeep(ctx, c, editor); err != nil {
		return nil, err
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	if err := createOrKeep(ctx, c, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-together"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: editor.Name},
		Subjects:   subject,
	}); err != nil {
		return nil, err
	}
	if err := createOrKeep(ctx, c, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-data"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"configmaps", "secrets"},
			Verbs: []string{"get", "list", "create", "update", "patch", "delete"},
		}},
	}); err != nil {
		return nil, err
	}
	if err := createOrKeep(ctx, c, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-data"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user + "-data"},
		Subjects:   subject,
	}); err != nil {
		return nil, err
	}
	groups := []string{"system:authenticated"}
	if err := waitAllowed(ctx, c, user, groups,
		authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "secrets"},
		authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "configmaps"},
		authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Group: "together.ai", Resource: "togetherfinetunes"},
	); err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return cfg, nil
}

// waitAllowed waits until the API server's authorizer grants user each of
// checks. A new RoleBinding takes effect only once the authorizer's own
// informers have seen it; a spec that acted at once could be refused by
// that lag on a loaded machine (it was, in CI) rather than by the role.
func waitAllowed(ctx context.Context, c client.Client, user string, groups []string, checks ...authorizationv1.ResourceAttributes) error {
	for _, attrs := range checks {
		var last string
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: user, Groups: groups, ResourceAttributes: &attrs,
			}}
			if err := c.Create(ctx, review); err != nil {
				return false, fmt.Errorf("asking whether %s may %s %s: %w", user, attrs.Verb, attrs.Resource, err)
			}
			last = review.Status.Reason
			return review.Status.Allowed, nil
		})
		if err != nil {
			return fmt.Errorf("%s is still not allowed to %s %s in %q (%s): %w", user, attrs.Verb, attrs.Resource, attrs.Namespace, last, err)
		}
	}
	return nil
}

func createOrKeep(ctx context.Context, c client.Client, obj client.Object) error {
	if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}
