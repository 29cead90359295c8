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

package secretread

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// cluster is a fake API server holding Secrets: its metadata view stands
// for the manager's cache, its live view counts the GETs that would reach
// the API server.
type cluster struct {
	secrets map[types.NamespacedName]*corev1.Secret
	// cacheLag holds Secrets the cache has not seen yet (still missing
	// there, or at an older version).
	cacheLag map[types.NamespacedName]*corev1.Secret
	live     int
}

func newCluster() *cluster {
	return &cluster{secrets: map[types.NamespacedName]*corev1.Secret{}, cacheLag: map[types.NamespacedName]*corev1.Secret{}}
}

func (c *cluster) put(ns, name, rv string, data map[string]string) types.NamespacedName {
	key := types.NamespacedName{Namespace: ns, Name: name}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), ResourceVersion: rv}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	c.secrets[key] = s
	return key
}

type metaView struct{ c *cluster }

func (m metaView) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	s, ok := m.c.cacheLag[key]
	if !ok {
		s, ok = m.c.secrets[key]
	}
	if !ok || s == nil {
		return apierrors.NewNotFound(corev1.Resource("secrets"), key.Name)
	}
	p, isMeta := obj.(*metav1.PartialObjectMetadata)
	if !isMeta {
		return fmt.Errorf("the cache was asked for a %T: it must only ever serve metadata", obj)
	}
	p.ObjectMeta = *s.ObjectMeta.DeepCopy()
	return nil
}

func (metaView) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return fmt.Errorf("not used")
}

type liveView struct{ c *cluster }

func (l liveView) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	l.c.live++
	s, ok := l.c.secrets[key]
	if !ok {
		return apierrors.NewNotFound(corev1.Resource("secrets"), key.Name)
	}
	s.DeepCopyInto(obj.(*corev1.Secret))
	return nil
}

func (liveView) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return fmt.Errorf("not used")
}

func reader(c *cluster) *Reader { return &Reader{Meta: metaView{c}, Live: liveView{c}} }

func TestAnUnchangedSecretIsReadOnce(t *testing.T) {
	c := newCluster()
	key := c.put("team-a", "api", "1", map[string]string{"api-key": "k1", "other": "not asked for"})
	r := reader(c)
	for i := range 100 {
		v, found, err := r.Values(context.Background(), key, "api-key", "absent")
		if err != nil || !found {
			t.Fatalf("resolution %d: found=%v err=%v", i, found, err)
		}
		if string(v[0]) != "k1" || v[1] != nil {
			t.Fatalf("resolution %d: got %q, want the value under api-key and nothing for a key the Secret lacks", i, v)
		}
	}
	if c.live != 1 {
		t.Fatalf("100 resolutions of an unchanged Secret cost %d live reads, want 1", c.live)
	}
}

func TestANewVersionIsReadOnceTheCacheSeesIt(t *testing.T) {
	c := newCluster()
	key := c.put("team-a", "api", "1", map[string]string{"api-key": "old"})
	r := reader(c)
	if v, _, _ := r.Values(context.Background(), key, "api-key"); string(v[0]) != "old" {
		t.Fatalf("got %q, want old", v[0])
	}
	// Rotated on the API server; the cache still holds version 1.
	c.cacheLag[key] = c.secrets[key]
	c.put("team-a", "api", "2", map[string]string{"api-key": "new"})
	if v, _, _ := r.Values(context.Background(), key, "api-key"); string(v[0]) != "old" || c.live != 1 {
		t.Fatalf("before the cache saw the rotation: got %q after %d live reads, want old after 1", v[0], c.live)
	}
	delete(c.cacheLag, key)
	for range 10 {
		if v, _, _ := r.Values(context.Background(), key, "api-key"); string(v[0]) != "new" {
			t.Fatalf("after the cache saw the rotation: got %q, want new", v[0])
		}
	}
	if c.live != 2 {
		t.Fatalf("a rotation cost %d live reads in all, want 2 (one per version)", c.live)
	}
}

func TestASecretMissingFromTheCacheCostsNoRead(t *testing.T) {
	c := newCluster()
	key := c.put("team-a", "api", "1", map[string]string{"api-key": "k1"})
	c.cacheLag[key] = nil // created a moment ago: the cache has not seen it
	r := reader(c)
	for range 100 {
		if _, found, err := r.Values(context.Background(), key, "api-key"); found || err != nil {
			t.Fatalf("found=%v err=%v, want a missing Secret", found, err)
		}
	}
	if c.live != 0 {
		t.Fatalf("100 resolutions of a Secret the cache lacks cost %d live reads, want none", c.live)
	}
	delete(c.cacheLag, key)
	if v, found, _ := r.Values(context.Background(), key, "api-key"); !found || string(v[0]) != "k1" {
		t.Fatal("once the cache sees the Secret, its value is read")
	}
}

func TestADeletedSecretIsForgotten(t *testing.T) {
	c := newCluster()
	key := c.put("team-a", "api", "1", map[string]string{"api-key": "k1"})
	r := reader(c)
	_, _, _ = r.Values(context.Background(), key, "api-key")
	delete(c.secrets, key)
	if _, found, _ := r.Values(context.Background(), key, "api-key"); found {
		t.Fatal("a deleted Secret is still found")
	}
	if n := r.memory().Len(); n != 0 {
		t.Fatalf("the reader still remembers %d values of a deleted Secret", n)
	}
}

func TestMemoryIsBounded(t *testing.T) {
	c := newCluster()
	r := reader(c)
	for i := range maxRemembered + 500 {
		key := c.put("ns", fmt.Sprint("s-", i), "1", map[string]string{"k": "v"})
		if _, found, err := r.Values(context.Background(), key, "k"); !found || err != nil {
			t.Fatal(found, err)
		}
	}
	if n := r.memory().Len(); n > maxRemembered {
		t.Fatalf("the reader remembers %d Secrets, more than its bound %d", n, maxRemembered)
	}
}

func TestRememberedValuesDoNotPrint(t *testing.T) {
	m := memo{uid: "u", resourceVersion: "1", values: [][]byte{[]byte("sk-very-secret")}}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, m); strings.Contains(out, "very-secret") {
			t.Fatalf("%s prints the value: %s", f, out)
		}
	}
}
