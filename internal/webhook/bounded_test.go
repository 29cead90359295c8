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

package webhook

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/internal/event"
)

func subscriptionN(i int) *togetherv1.TogetherWebhookSubscription {
	return &togetherv1.TogetherWebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint("sub-", i), UID: types.UID(fmt.Sprint("uid-", i))},
		Spec:       togetherv1.TogetherWebhookSubscriptionSpec{SecretRef: togetherv1.WebhookSecretRef{Name: fmt.Sprint("secret-", i)}},
	}
}

// The set that keeps unmatched-event warnings to one per subscription does
// not keep every subscription it ever warned about.
func TestWarnedSetForgetsOldWarnings(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := &Server{Recorder: events.NewFakeRecorder(2000), Now: func() time.Time { return now }}
	s.init()
	ev := event.Event{ID: "e", Type: togetherv1.EventFineTuneCheckpoint, JobID: "ft-x"}
	for i := range 1000 {
		s.warnUnmatched(subscriptionN(i), ev, nil)
	}
	now = now.Add(warnEvery + time.Minute)
	s.warnUnmatched(subscriptionN(0), ev, nil)
	if n := s.warned.Len(); n != 1 {
		t.Fatalf("the warned set holds %d subscriptions an hour later, want 1", n)
	}
}

// One source address holds at most its share of connections; the rest are
// closed on accept, and a closed connection gives its slot back.
func TestConnectionsPerSourceAreBounded(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitConns(inner, 10, 2)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	closedByServer := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		return err == io.EOF
	}
	a, b := dial(), dial()
	if closedByServer(a) || closedByServer(b) {
		t.Fatal("a connection within the source's share was closed")
	}
	if c := dial(); !closedByServer(c) {
		t.Fatal("a third connection from the same source was kept")
	}
	_ = a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial()
		if !closedByServer(c) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection never gave its slot back")
		}
	}
}

// A Server started without the manager's cache for its signing Secrets
// refuses to run: the manager's client reads Secrets past the cache, so
// every delivery would cost an API-server read.
func TestStartNeedsTheSecretCache(t *testing.T) {
	s := &Server{Addr: "127.0.0.1:0", Client: noClient{}}
	err := s.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "SecretCache") {
		t.Fatalf("Start without SecretCache returned %v, want an error naming SecretCache", err)
	}
}

// noClient is a client.Client no call reaches.
type noClient struct{ client.Client }
