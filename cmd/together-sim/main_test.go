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

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/together-operator/together-operator/pkg/push"
)

func TestSendSignsBothWays(t *testing.T) {
	got := make(chan push.Envelope, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		okHex := push.VerifyHex(r.Header.Get(push.HeaderSignature), body, []byte("s3cret"))
		okStd := push.VerifyStandard(r.Header.Get(push.HeaderWebhookID), r.Header.Get(push.HeaderWebhookTimestamp),
			r.Header.Get(push.HeaderWebhookSignature), body, time.Now(), time.Minute, []byte("s3cret"))
		if !okHex || !okStd {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var env push.Envelope
		_ = json.Unmarshal(body, &env)
		got <- env
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"status":"unmatched"}`)
	}))
	defer srv.Close()
	var out bytes.Buffer
	err := run([]string{"send", "--url", srv.URL, "--secret", "s3cret", "--type", "fine_tune.completed", "--data", `{"fine_tune_id":"ft-1","model_name":"u/m"}`}, &out)
	if err != nil {
		t.Fatal(err)
	}
	env := <-got
	if env.Type != "fine_tune.completed" || !strings.Contains(string(env.Data), "ft-1") || env.ID == "" {
		t.Errorf("envelope = %+v", env)
	}
	if strings.Contains(out.String(), "s3cret") {
		t.Error("the secret was printed")
	}
	if !strings.Contains(out.String(), `HTTP 202 {"status":"unmatched"}`) {
		t.Errorf("the receiver's answer to an accepted event is not shown: %q", out.String())
	}
}

func TestHelpIsNotAnError(t *testing.T) {
	for _, args := range [][]string{{"send", "--help"}, {"send", "-h"}, {"--help"}, {"serve", "-h"}} {
		var out bytes.Buffer
		if err := run(args, &out); err != nil {
			t.Errorf("%v: %v (main would exit 1)", args, err)
		}
		if !strings.Contains(out.String(), "Usage: together-sim") {
			t.Errorf("%v printed no usage: %q", args, out.String())
		}
	}
	var out bytes.Buffer
	_ = run([]string{"send", "--help"}, &out)
	for _, want := range []string{"-url", "-secret", "-type", "-data", "support-bot"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("send --help does not mention %s", want)
		}
	}
}

func TestSendRejectsBadInput(t *testing.T) {
	if err := run([]string{"send", "--url", "http://127.0.0.1:1", "--secret", "s", "--type", "x", "--data", "{"}, io.Discard); err == nil {
		t.Error("invalid --data accepted")
	}
	if err := run([]string{"send", "--type", "x"}, io.Discard); err == nil {
		t.Error("missing --url/--secret accepted")
	}
}

func TestSendFailsOnRejection(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"status":"Bad Request","error":"data.batch_id is required"}`)
	}))
	defer srv.Close()
	err := run([]string{"send", "--url", srv.URL, "--secret", "s", "--type", "batch.done"}, io.Discard)
	if err == nil {
		t.Fatal("a 400 from the receiver was reported as success")
	}
	if !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), "data.batch_id is required") {
		t.Errorf("the error does not say what the receiver said: %v", err)
	}
}
