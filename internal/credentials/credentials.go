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

// Package credentials decides which Together account a namespace's
// resources act on. Each namespace brings its own API key — a Secret its
// resource names, or the namespace default Secret together-api-key — so
// that one team's resources can only see, adopt, cancel or delete what that
// team's key reaches. An operator-wide key serves only the namespaces an
// administrator allowed, by flag or by a namespace label; none by default.
//
// A resolution reads nothing from the API server in steady state. Whether a
// Secret exists, and its version, come from the manager's metadata-only
// cache of Secrets (the same informer the reconcilers' Secret watches use,
// which never holds data); its key is read with a live GET only when that
// version (UID or resourceVersion) differs from the one this Resolver last
// read, and reused otherwise. A rotated key therefore takes effect on the
// first reconcile or poll after the cache sees the Secret's new version —
// the same watch event that wakes the resources using it — without a
// restart. The shared-key label of a Namespace is read from the cached
// Namespace metadata too. A key is never logged or put in an error: an
// account is named by a short hash of its key.
package credentials

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/secretread"
	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/ttl"
)

const (
	// DefaultSecretName is the Secret a namespace's resources use when they
	// name none; its key APIKeyKey holds the Together API key.
	DefaultSecretName = "together-api-key"
	// APIKeyKey is the Secret key holding the API key.
	APIKeyKey = "api-key"
	// SharedKeyLabel, set to "true" on a Namespace by an administrator, lets
	// resources there use the operator-wide key when they bring none.
	SharedKeyLabel = "together.ai/shared-api-key"
)

// SharedSource is the Account.Source of the operator-wide key.
const SharedSource = "the operator-wide key"

// The cached metadata of Secrets and Namespaces comes from the informers
// the reconcilers' watches already run (internal/controller, list and
// watch); the live reads need get.
//
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// ErrNoCredentials means a resource has no key to act with: its namespace
// has none and may not use the operator-wide one, or the Secret it names is
// missing or lacks the key. Every such error is a *MissingError, whose
// message says what to create.
var ErrNoCredentials = errors.New("no Together API key for this namespace")

// MissingError is an ErrNoCredentials with the condition reason that tells
// the two cases apart: NoCredentials (nothing named, no default, no shared
// key allowed) and APIKeySecretNotFound (the Secret the resource names, or
// its key, is missing). Its message names the Secret and key, never a value.
type MissingError struct {
	Reason string
	msg    string
}

func (e *MissingError) Error() string { return e.msg }

// Is makes every MissingError an ErrNoCredentials, so that callers that only
// need to know "no account" (a finalizer letting go) need not tell them apart.
func (e *MissingError) Is(target error) bool { return target == ErrNoCredentials }

// Reason is the condition reason for err: the MissingError's, or
// NoCredentials.
func Reason(err error) string {
	var m *MissingError
	if errors.As(err, &m) {
		return m.Reason
	}
	return togetherv1.ReasonNoCredentials
}

// SecretRef names a Secret in the resource's namespace and the key in it;
// an empty Key means APIKeyKey.
type SecretRef struct {
	Name, Key string
}

// Resource is what the resolver needs of a resource: its namespace and the
// Secret it names for its key (the API types' APIKeySecret method).
type Resource interface {
	GetNamespace() string
	APIKeySecret() *togetherv1.APIKeySecretRef
}

// RefOf is the Secret o names for its key, or nil when it names none.
func RefOf(o Resource) *SecretRef {
	ref := o.APIKeySecret()
	if ref == nil || ref.Name == "" {
		return nil
	}
	return &SecretRef{Name: ref.Name, Key: ref.Key}
}

// Account is the Together account a resource acts on.
type Account struct {
	// ID names the key without revealing it (a prefix of its SHA-256), so
	// that resources on the same key share a client and one poll.
	ID string
	// Source says where the key came from, for messages: a Secret's
	// namespace/name, or "the operator-wide key".
	Source string
	// Client talks to Together with this account's key.
	Client *together.Client
	// Secret is the Secret of the resource's namespace the key was read
	// from (its Key set), or nil for the operator-wide key. It is what a
	// Pod acting for the resource may reference (a batch fetch Job): the
	// operator-wide key is never handed to a namespace.
	Secret *SecretRef
}

// Resolver finds a namespace's account.
type Resolver struct {
	// Reader reads a Secret's data from the API server (the manager's API
	// reader: never a cache), when Cache says it changed since the last
	// read.
	Reader client.Reader
	// Cache serves the metadata (name, UID, resourceVersion, labels) of
	// Secrets and Namespaces as metav1.PartialObjectMetadata: the manager's
	// cache, whose metadata-only informers the reconcilers' watches start.
	// It is never asked for a Secret's data. Nil reads everything with
	// Reader on every resolution (tests without a manager).
	Cache client.Reader
	// NewClient builds a client for a key: the operator's client options
	// with APIKey set.
	NewClient func(key string) (*together.Client, error)
	// SharedKey returns the operator-wide key, or "" when there is none. It
	// is called on each resolution that needs it, so that it may re-read a
	// rotated Secret; SharedSecret, when set, is used instead.
	SharedKey func(ctx context.Context) (string, error)
	// SharedSecret, when set, names the Secret whose key APIKeyKey holds the
	// operator-wide key (--api-key-secret). It is read as a namespace's
	// Secret is: its version from Cache, its value again only when that
	// changed. Missing, it is an error (retried), not a missing account; a
	// Secret without the key means no operator-wide key.
	SharedSecret *types.NamespacedName
	// SharedNamespaces may use the operator-wide key (besides namespaces
	// labelled SharedKeyLabel=true).
	SharedNamespaces []string
	// Now is the clock of the clients' idle time (time.Now when nil).
	Now func() time.Time

	// clients holds one Together client per key in use, keyed by its
	// fingerprint; a key nobody resolved for clientIdle (a rotated-out one)
	// is dropped, so rotations do not pile clients up.
	mu      sync.Mutex
	clients *ttl.Map[string, *together.Client]

	// secrets reads key Secrets through Cache and Reader: live only when a
	// Secret's version changed since it last read it, from a bounded memory
	// of the Secrets resolutions asked for otherwise.
	secretsOnce sync.Once
	secrets     *secretread.Reader
}

// ForResource returns the account o acts on: For with its namespace and
// the Secret it names.
func (r *Resolver) ForResource(ctx context.Context, o Resource) (*Account, error) {
	return r.For(ctx, o.GetNamespace(), RefOf(o))
}

// For returns the account of a resource in namespace ns. This is the one
// place that decides it, in this order: ref, when set, names the Secret the
// resource chose; otherwise the namespace default Secret is used, and
// failing that the operator-wide key if ns is allowed it. A Secret the
// resource names but that is missing, or lacks the key, is an error
// (APIKeySecretNotFound), never a fallback: the resource asked for that
// account, and acting on another would be acting for someone else.
func (r *Resolver) For(ctx context.Context, ns string, ref *SecretRef) (*Account, error) {
	if ref != nil && ref.Name != "" {
		key, err := r.readKey(ctx, ns, *ref)
		if m := (*MissingError)(nil); errors.As(err, &m) {
			return nil, &MissingError{Reason: togetherv1.ReasonAPIKeySecretNotFound, msg: "spec.apiKeySecretRef: " + m.msg}
		}
		if err != nil {
			return nil, err
		}
		return r.secretAccount(key, ns, *ref)
	}
	key, err := r.readKey(ctx, ns, SecretRef{Name: DefaultSecretName})
	if err == nil {
		return r.secretAccount(key, ns, SecretRef{Name: DefaultSecretName})
	}
	if !errors.Is(err, ErrNoCredentials) {
		return nil, err
	}
	allowed, aerr := r.sharedAllowed(ctx, ns)
	if aerr != nil {
		return nil, aerr
	}
	if allowed {
		shared, serr := r.sharedKey(ctx)
		if serr != nil {
			return nil, fmt.Errorf("reading the operator-wide API key: %w", serr)
		}
		if shared != "" {
			return r.account(shared, SharedSource)
		}
	}
	return nil, &MissingError{Reason: togetherv1.ReasonNoCredentials, msg: fmt.Sprintf(
		"%v: create it with kubectl -n %s create secret generic %s --from-literal=%s=<your Together API key>, or name another Secret of the namespace in the resource's spec.apiKeySecretRef",
		ErrNoCredentials, ns, DefaultSecretName, APIKeyKey)}
}

// readKey returns the key held by ref in ns, or a *MissingError naming what
// is missing and how to create it (never a value).
func (r *Resolver) readKey(ctx context.Context, ns string, ref SecretRef) (string, error) {
	k := ref.Key
	if k == "" {
		k = APIKeyKey
	}
	v, found, err := r.secretValue(ctx, ns, ref.Name, k)
	if err != nil {
		return "", err
	}
	if !found {
		return "", &MissingError{msg: fmt.Sprintf("Secret %s/%s does not exist; create it with kubectl -n %s create secret generic %s --from-literal=%s=<your Together API key>",
			ns, ref.Name, ns, ref.Name, k)}
	}
	if v == "" {
		return "", &MissingError{msg: fmt.Sprintf("Secret %s/%s has no key %q; put the Together API key under that key, or name the key that holds it", ns, ref.Name, k)}
	}
	return v, nil
}

// secretValue returns what Secret ns/name holds under k ("" for nothing),
// and found=false when the Secret does not exist. The Secret's existence
// and version come from Cache; its data is read live only when that version
// is not the one last read (internal/secretread). A Secret the cache does
// not have yet is missing: the Secret watch wakes the resource when the
// cache sees it.
func (r *Resolver) secretValue(ctx context.Context, ns, name, k string) (value string, found bool, err error) {
	r.secretsOnce.Do(func() { r.secrets = &secretread.Reader{Meta: r.Cache, Live: r.Reader} })
	values, found, err := r.secrets.Values(ctx, types.NamespacedName{Namespace: ns, Name: name}, k)
	if err != nil || !found {
		return "", found, err
	}
	return string(values[0]), true, nil
}

// sharedKey returns the operator-wide key, or "" when there is none.
func (r *Resolver) sharedKey(ctx context.Context) (string, error) {
	if s := r.SharedSecret; s != nil {
		v, found, err := r.secretValue(ctx, s.Namespace, s.Name, APIKeyKey)
		if err != nil {
			return "", err
		}
		if !found {
			return "", fmt.Errorf("the Secret %s named by --api-key-secret does not exist", s)
		}
		return v, nil
	}
	if r.SharedKey == nil {
		return "", nil
	}
	return r.SharedKey(ctx)
}

// sharedAllowed says whether ns may use the operator-wide key: listed by
// flag, or labelled by an administrator. The label is read from Cache (the
// Namespace watch's metadata informer) when set.
func (r *Resolver) sharedAllowed(ctx context.Context, ns string) (bool, error) {
	if slices.Contains(r.SharedNamespaces, ns) {
		return true, nil
	}
	var n client.Object = &corev1.Namespace{}
	reader := r.Reader
	if r.Cache != nil {
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
		n, reader = meta, r.Cache
	}
	if err := reader.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
		return false, fmt.Errorf("reading Namespace %s: %w", ns, err)
	}
	return n.GetLabels()[SharedKeyLabel] == "true", nil
}

// secretAccount is the account of key, read from ref in ns.
func (r *Resolver) secretAccount(key, ns string, ref SecretRef) (*Account, error) {
	acc, err := r.account(key, ns+"/"+ref.Name)
	if err != nil {
		return nil, err
	}
	if ref.Key == "" {
		ref.Key = APIKeyKey
	}
	acc.Secret = &ref
	return acc, nil
}

// ClientsHeld says how many Together clients the Resolver keeps (expired
// ones included until swept), for tests and debugging.
func (r *Resolver) ClientsHeld() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.clients == nil {
		return 0
	}
	return r.clients.Len()
}

// Bounds of the clients a Resolver keeps: one per key in use, at most
// maxClients, each dropped after clientIdle without a resolution.
const (
	maxClients = 10000
	clientIdle = time.Hour
)

// account returns the account of key, reusing its client.
func (r *Resolver) account(key, source string) (*Account, error) {
	sum := sha256.Sum256([]byte(key))
	id := hex.EncodeToString(sum[:8])
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.clients == nil {
		r.clients = ttl.New[string, *together.Client](maxClients, clientIdle)
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	c, ok := r.clients.Get(id, now)
	if !ok {
		var err error
		if c, err = r.NewClient(key); err != nil {
			return nil, fmt.Errorf("creating a Together client for %s: %w", source, err)
		}
	}
	r.clients.Set(id, c, now, now.Add(clientIdle))
	return &Account{ID: id, Source: source, Client: c}, nil
}
