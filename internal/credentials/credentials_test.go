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
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/credentials"
	"github.com/together-operator/together-operator/internal/testenv"
	"github.com/together-operator/together-operator/internal/together"
)

var (
	k8s client.Client
	// metadata is a cache like the manager's: metadata-only informers of
	// Secrets and Namespaces, and nothing else. It fails a read of any
	// other informer instead of starting one, so a resolver that asked it
	// for a Secret's data or a full Namespace would fail here.
	metadata cache.Cache
)

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
	metadata, err = cache.New(cfg, cache.Options{Scheme: testenv.Scheme(), ReaderFailOnMissingInformer: true})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for _, kind := range []string{"Secret", "Namespace"} {
		if _, err := metadata.GetInformer(ctx, partial(kind), cache.BlockUntilSynced(false)); err != nil {
			panic(err)
		}
	}
	go func() { _ = metadata.Start(ctx) }()
	if !metadata.WaitForCacheSync(ctx) {
		panic("the metadata cache did not sync")
	}
	code := m.Run()
	cancel()
	_ = env.Stop()
	os.Exit(code)
}

// partial is an empty metadata-only object of kind (core/v1).
func partial(kind string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	return m
}

// cached waits until the metadata cache holds obj at its current version,
// as a manager's does a moment after a write: resolutions read from it.
func cached(t *testing.T, obj client.Object, kind string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		m := partial(kind)
		if err := metadata.Get(ctx, client.ObjectKeyFromObject(obj), m); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return m.ResourceVersion == obj.GetResourceVersion(), nil
	})
	if err != nil {
		t.Fatalf("the cache never saw %s %s at version %s: %v", kind, client.ObjectKeyFromObject(obj), obj.GetResourceVersion(), err)
	}
}

func namespace(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := k8s.Create(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	cached(t, n, "Namespace")
	return name
}

func secret(t *testing.T, ns, name, key, value string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{key: []byte(value)}}
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	cached(t, s, "Secret")
	return s
}

// update writes s and waits until the cache has its new version.
func update(t *testing.T, s *corev1.Secret) {
	t.Helper()
	if err := k8s.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	cached(t, s, "Secret")
}

// countingReader counts the live reads that reach the API server, by kind.
type countingReader struct {
	client.Reader
	gets map[string]int
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	kind := "other"
	switch o := obj.(type) {
	case *corev1.Secret:
		kind = "Secret"
	case *corev1.Namespace:
		kind = "Namespace"
	case *metav1.PartialObjectMetadata:
		kind = o.Kind
	}
	c.gets[kind]++
	return c.Reader.Get(ctx, key, obj, opts...)
}

// resolver records the keys it built clients for, to check which key a
// namespace got without reading it back from the client.
func resolver(shared string, allowed ...string) (*credentials.Resolver, *[]string) {
	r, built, _ := countingResolver(shared, allowed...)
	return r, built
}

// countingResolver is resolver, reading metadata from the cache and
// counting its live reads.
func countingResolver(shared string, allowed ...string) (*credentials.Resolver, *[]string, *countingReader) {
	var built []string
	live := &countingReader{Reader: k8s, gets: map[string]int{}}
	return &credentials.Resolver{
		Reader: live,
		Cache:  metadata,
		NewClient: func(key string) (*together.Client, error) {
			built = append(built, key)
			return together.New(together.Options{BaseURL: "http://127.0.0.1:1/v1", APIKey: key})
		},
		SharedKey:        func(context.Context) (string, error) { return shared, nil },
		SharedNamespaces: allowed,
	}, &built, live
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
	update(t, s)
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
	update(t, own)
	rotated, err := r.ForResource(ctx, ft(&togetherv1.APIKeySecretRef{Name: "team-b"}))
	if err != nil {
		t.Fatal(err)
	}
	if rotated.ID == named.ID || (*built)[len(*built)-1] != "key-b-rotated" {
		t.Errorf("after rotating the named Secret the account is %s (was %s)", rotated.ID, named.ID)
	}
}

// A resource whose Secret has not changed costs no API-server read after
// the first: its version comes from the metadata cache, its key from what
// the resolver read. A rotation is read once, on the first resolution
// after the cache sees it, and used from then on.
func TestUnchangedSecretIsReadOnce(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "steady", nil)
	s := secret(t, ns, credentials.DefaultSecretName, credentials.APIKeyKey, "steady-key")
	secret(t, ns, "named", "token", "named-key")
	r, built, live := countingResolver("")

	var first *credentials.Account
	for i := range 20 {
		acc, err := r.For(ctx, ns, nil)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = acc
		} else if acc.ID != first.ID {
			t.Fatalf("resolution %d gave account %s, the first %s", i, acc.ID, first.ID)
		}
		if _, err := r.For(ctx, ns, &credentials.SecretRef{Name: "named", Key: "token"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := live.gets; got["Secret"] != 2 || len(got) != 1 {
		t.Fatalf("20 resolutions each of two unchanged Secrets made live reads %v, want 2 Secret GETs (one per Secret) and nothing else", got)
	}

	s.Data[credentials.APIKeyKey] = []byte("rotated-key")
	update(t, s)
	for range 5 {
		acc, err := r.For(ctx, ns, nil)
		if err != nil {
			t.Fatal(err)
		}
		if acc.ID == first.ID || (*built)[len(*built)-1] != "rotated-key" {
			t.Fatalf("after the cache saw the rotation the account is still %s (clients built %d)", acc.ID, len(*built))
		}
	}
	if got := live.gets["Secret"]; got != 3 {
		t.Errorf("a rotation cost %d live Secret GETs in 5 resolutions, want 1", got-2)
	}

	// A Secret deleted and created again under the same name is a new
	// Secret (new UID), read anew.
	if err := k8s.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := r.For(ctx, ns, nil)
		return errors.Is(err, credentials.ErrNoCredentials), nil
	}); err != nil {
		t.Fatal("a deleted Secret still gives an account once the cache lost it")
	}
	secret(t, ns, credentials.DefaultSecretName, credentials.APIKeyKey, "recreated-key")
	if _, err := r.For(ctx, ns, nil); err != nil || (*built)[len(*built)-1] != "recreated-key" {
		t.Errorf("a recreated Secret gave %v, clients built %d", err, len(*built))
	}
}

// A Secret the cache does not have, or one without the key named, is
// missing without an API-server read each time: the Secret watch wakes the
// resource when that changes.
func TestMissingSecretCostsNoLiveRead(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "missing", nil)
	secret(t, ns, "keyless", "other", "x")
	r, _, live := countingResolver("")

	for range 10 {
		if _, err := r.For(ctx, ns, nil); !errors.Is(err, credentials.ErrNoCredentials) || credentials.Reason(err) != togetherv1.ReasonNoCredentials {
			t.Fatalf("a namespace without a Secret gave %v, want NoCredentials", err)
		}
		if _, err := r.For(ctx, ns, &credentials.SecretRef{Name: "absent"}); credentials.Reason(err) != togetherv1.ReasonAPIKeySecretNotFound {
			t.Fatalf("a missing named Secret gave %v, want APIKeySecretNotFound", err)
		}
	}
	if got := live.gets; got["Secret"] != 0 || got["Namespace"] != 0 {
		t.Errorf("resolutions of Secrets the cache does not have made live reads %v, want none", got)
	}
	for range 10 {
		_, err := r.For(ctx, ns, &credentials.SecretRef{Name: "keyless", Key: "token"})
		if credentials.Reason(err) != togetherv1.ReasonAPIKeySecretNotFound || !strings.Contains(err.Error(), `has no key "token"`) {
			t.Fatalf("a Secret without the key gave %v", err)
		}
	}
	if got := live.gets["Secret"]; got != 1 {
		t.Errorf("10 resolutions of an unchanged Secret lacking the key made %d live GETs, want 1", got)
	}
}

// The namespace's shared-key label is read from the cache, and the
// operator-wide key's Secret (--api-key-secret) is read like a namespace's:
// once, and again only when it changes.
func TestSharedKeyCostsNoLiveReadOnceRead(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "shared-steady", map[string]string{credentials.SharedKeyLabel: "true"})
	plain := namespace(t, "shared-refused", nil)
	op := namespace(t, "operator-system", nil)
	s := secret(t, op, "together-operator-key", credentials.APIKeyKey, "operator-key")
	r, built, live := countingResolver("")
	r.SharedKey = nil
	r.SharedSecret = &types.NamespacedName{Namespace: op, Name: "together-operator-key"}

	for range 10 {
		acc, err := r.For(ctx, ns, nil)
		if err != nil {
			t.Fatal(err)
		}
		if acc.Source != credentials.SharedSource || (*built)[len(*built)-1] != "operator-key" {
			t.Fatalf("a labelled namespace got %+v", acc)
		}
		if _, err := r.For(ctx, plain, nil); credentials.Reason(err) != togetherv1.ReasonNoCredentials {
			t.Fatalf("a namespace without the label gave %v, want NoCredentials", err)
		}
	}
	if got := live.gets; got["Namespace"] != 0 || got["Secret"] != 1 {
		t.Errorf("20 resolutions on the operator-wide key made live reads %v, want 1 Secret GET and no Namespace GET", got)
	}

	s.Data[credentials.APIKeyKey] = []byte("operator-key-rotated")
	update(t, s)
	if _, err := r.For(ctx, ns, nil); err != nil || (*built)[len(*built)-1] != "operator-key-rotated" {
		t.Errorf("after rotating the operator-wide key's Secret: %v, clients built %d", err, len(*built))
	}

	if err := k8s.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := r.For(ctx, ns, nil)
		return err != nil, nil
	}); err != nil {
		t.Fatal("a deleted operator-wide key Secret still gives an account")
	}
	_, err := r.For(ctx, ns, nil)
	if errors.Is(err, credentials.ErrNoCredentials) || !strings.Contains(err.Error(), "--api-key-secret") {
		t.Errorf("a missing --api-key-secret Secret gave %v, want an error naming the flag (retried, not a missing account)", err)
	}
}

// A key rotated out stops holding a Together client once nobody has
// resolved it for an hour: rotations do not pile clients up.
func TestRotatedOutKeysClientIsDropped(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "rotated-out", nil)
	shared := "key-one"
	r, built := resolver("", ns)
	r.SharedKey = func(context.Context) (string, error) { return shared, nil }
	now := time.Unix(1_800_000_000, 0)
	r.Now = func() time.Time { return now }

	if _, err := r.For(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	shared = "key-two"
	now = now.Add(30 * time.Minute)
	if _, err := r.For(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	if n := r.ClientsHeld(); n != 2 {
		t.Fatalf("during the rotation the resolver holds %d clients, want 2", n)
	}
	now = now.Add(50 * time.Minute) // key-one idle 80 min, key-two 50
	if _, err := r.For(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	if n := r.ClientsHeld(); n != 1 {
		t.Fatalf("an hour after the rotation the resolver holds %d clients, want only the new key's", n)
	}
	if len(*built) != 2 {
		t.Fatalf("clients built for %d keys, want 2 (the new key's client is reused)", len(*built))
	}
}
