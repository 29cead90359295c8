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

package credentials_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/testenv"
	"github.com/together-operator/together-operator/internal/together"
)

var k8s client.Client

func TestMain(m *testing.M) {
	env := testenv.Environment()
	cfg, err := env.Start()
	if err != nil {
		panic(err)
	}
	k8s, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

func namespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); err != nil {
		t.Fatal(err)
	}
	return name
}

func secret(t *testing.T, ns, name, key, value string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{key: []byte(value)}}
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// resolver records the keys it built clients for, to check which key a
// namespace got without reading it back from the client.
func resolver(shared string, allowed ...string) (*credentials.Resolver, *[]string) {
	var built []string
	return &credentials.Resolver{
		Reader: k8s,
		NewClient: func(key string) (*together.Client, error) {
			built = append(built, key)
			return together.New(together.Options{BaseURL: "http://127.0.0.1:1/v1", APIKey: key})
		},
		SharedKey:        func(context.Context) (string, error) { return shared, nil },
		SharedNamespaces: allowed,
	}, &built
}

func TestEachNamespaceGetsItsOwnKey(t *testing.T) {
	ctx := context.Background()
	a := namespace(t, "team-a", nil)
	b := namespace(t, "team-b", nil)
	secret(t, a, credentials.DefaultSecretName, credentials.APIKeyKey, "key-a")
	secret(t, b, "custom", "token", "key-b")
	r, built := resolver("shared-key")

	accA, err := r.For(ctx, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	accB, err := r.For(ctx, b, &credentials.SecretRef{Name: "custom", Key: "token"})
	if err != nil {
		t.Fatal(err)
	}
	if accA.ID == accB.ID || accA.Client == accB.Client {
		t.Fatalf("two keys share an account: %+v %+v", accA, accB)
	}
	if strings.Join(*built, ",") != "key-a,key-b" {
		t.Errorf("clients built for %v, want key-a then key-b", *built)
	}
	for _, acc := range []*credentials.Account{accA, accB} {
		if strings.Contains(acc.ID+acc.Source, "key-") {
			t.Errorf("account %+v reveals its key", acc)
		}
	}
	// The Secret each key came from, for a Pod acting for the resource (a
	// batch fetch Job) to reference instead of a copy of the key.
	if got := accA.Secret; got == nil || *got != (credentials.SecretRef{Name: credentials.DefaultSecretName, Key: credentials.APIKeyKey}) {
		t.Errorf("account of %s names Secret %+v, want together-api-key/api-key", a, got)
	}
	if got := accB.Secret; got == nil || *got != (credentials.SecretRef{Name: "custom", Key: "token"}) {
		t.Errorf("account of %s names Secret %+v, want custom/token", b, got)
	}
	again, err := r.For(ctx, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Client != accA.Client || len(*built) != 2 {
		t.Error("the same key built a second client")
	}
}

func TestSharedKeyOnlyWhereAllowed(t *testing.T) {
	ctx := context.Background()
	plain := namespace(t, "plain", nil)
	labelled := namespace(t, "labelled", map[string]string{credentials.SharedKeyLabel: "true"})
	listed := namespace(t, "listed", nil)
	r, _ := resolver("shared-key", listed)

	_, err := r.For(ctx, plain, nil)
	if !errors.Is(err, credentials.ErrNoCredentials) {
		t.Fatalf("a namespace nobody allowed got %v, want ErrNoCredentials", err)
	}
	if !strings.Contains(err.Error(), "kubectl -n plain create secret generic together-api-key") {
		t.Errorf("error %q does not say what to create", err)
	}
	if strings.Contains(err.Error(), "shared-key") {
		t.Errorf("error %q reveals the key", err)
	}
	for _, ns := range []string{labelled, listed} {
		acc, err := r.For(ctx, ns, nil)
		if err != nil {
			t.Fatalf("%s: %v", ns, err)
		}
		if acc.Source != "the operator-wide key" {
			t.Errorf("%s: source %q", ns, acc.Source)
		}
		if acc.Secret != nil {
			t.Errorf("%s: the operator-wide key names Secret %+v of the namespace; it must name none, so that no Pod there is given it", ns, acc.Secret)
		}
	}

	// A Secret the resource names but that is missing never falls back.
	if _, err := r.For(ctx, labelled, &credentials.SecretRef{Name: "missing"}); !errors.Is(err, credentials.ErrNoCredentials) {
		t.Errorf("a missing named Secret gave %v, want ErrNoCredentials", err)
	}
}

func TestRotatedKeyTakesEffectWithoutRestart(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "rotating", nil)
	s := secret(t, ns, credentials.DefaultSecretName, credentials.APIKeyKey, "old-key")
	r, built := resolver("")
	before, err := r.For(ctx, ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Data[credentials.APIKeyKey] = []byte("new-key")
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	after, err := r.For(ctx, ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	if after.ID == before.ID || (*built)[len(*built)-1] != "new-key" {
		t.Errorf("after rotation the account is %s (was %s), clients built for %v", after.ID, before.ID, *built)
	}
}

// A resource that names a Secret acts with that Secret's key, before the
// namespace default and the operator-wide key; a named Secret that is
// missing or lacks the key is APIKeySecretNotFound naming both (never a
// fallback, never the value); two Secrets holding the same key are one
// account; a rotated named Secret takes effect on the next resolution.
func TestResourceNamesItsSecret(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "named", map[string]string{credentials.SharedKeyLabel: "true"})
	secret(t, ns, credentials.DefaultSecretName, credentials.APIKeyKey, "default-key")
	own := secret(t, ns, "team-b", credentials.APIKeyKey, "key-b")
	secret(t, ns, "team-b-copy", "token", "key-b")
	r, built := resolver("shared-key")
	ft := func(ref *togetherv1.APIKeySecretRef) *togetherv1.TogetherFineTune {
		return &togetherv1.TogetherFineTune{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "x"},
			Spec: togetherv1.TogetherFineTuneSpec{APIKeySecretRef: ref}}
	}

	def, err := r.ForResource(ctx, ft(nil))
	if err != nil {
		t.Fatal(err)
	}
	named, err := r.ForResource(ctx, ft(&togetherv1.APIKeySecretRef{Name: "team-b"}))
	if err != nil {
		t.Fatal(err)
	}
	if named.ID == def.ID || named.Source != ns+"/team-b" || (*built)[len(*built)-1] != "key-b" {
		t.Errorf("the named Secret gave account %+v (default %+v), clients built for %v", named, def, *built)
	}
	copied, err := r.ForResource(ctx, ft(&togetherv1.APIKeySecretRef{Name: "team-b-copy", Key: "token"}))
	if err != nil {
		t.Fatal(err)
	}
	if copied.ID != named.ID || copied.Client != named.Client {
		t.Errorf("two Secrets with the same key are two accounts: %+v, %+v", copied, named)
	}

	for _, c := range []struct {
		ref  togetherv1.APIKeySecretRef
		want []string
	}{
		{togetherv1.APIKeySecretRef{Name: "absent"}, []string{"Secret named/absent does not exist", "kubectl -n named create secret generic absent --from-literal=api-key="}},
		{togetherv1.APIKeySecretRef{Name: "team-b", Key: "other"}, []string{"Secret named/team-b has no key \"other\""}},
	} {
		_, err := r.ForResource(ctx, ft(&c.ref))
		if !errors.Is(err, credentials.ErrNoCredentials) || credentials.Reason(err) != togetherv1.ReasonAPIKeySecretNotFound {
			t.Errorf("%+v: got %v (reason %s), want APIKeySecretNotFound and no fallback", c.ref, err, credentials.Reason(err))
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: message %q does not say %q", c.ref, err, w)
			}
		}
		for _, key := range []string{"key-b", "default-key", "shared-key"} {
			if strings.Contains(err.Error(), key) {
				t.Errorf("%+v: message %q reveals a key", c.ref, err)
			}
		}
	}

	own.Data[credentials.APIKeyKey] = []byte("key-b-rotated")
	if err := k8s.Update(ctx, own); err != nil {
		t.Fatal(err)
	}
	rotated, err := r.ForResource(ctx, ft(&togetherv1.APIKeySecretRef{Name: "team-b"}))
	if err != nil {
		t.Fatal(err)
	}
	if rotated.ID == named.ID || (*built)[len(*built)-1] != "key-b-rotated" {
		t.Errorf("after rotating the named Secret the account is %s (was %s)", rotated.ID, named.ID)
	}
}
