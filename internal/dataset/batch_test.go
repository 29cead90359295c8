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

package dataset

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const chatLine = `{"custom_id":"%s","body":{"messages":[{"role":"user","content":"hi"}]}}`

func chat(id string) string { return strings.Replace(chatLine, "%s", id, 1) }

func TestParseBatchInputAcceptsValidFile(t *testing.T) {
	in := chat("a") + "\n" + chat("b") + "\r\n" + chat("c") + "\n"
	reqs, err := ParseBatchInput(strings.NewReader(in), EndpointChatCompletions)
	if err != nil {
		t.Fatalf("valid input rejected: %v", err)
	}
	var ids []string
	for _, r := range reqs {
		ids = append(ids, r.CustomID)
	}
	if strings.Join(ids, ",") != "a,b,c" {
		t.Fatalf("custom ids out of order: %v", ids)
	}
	if !bytes.Equal(reqs[1].Line, []byte(chat("b"))) {
		t.Fatalf("line not kept verbatim: %q", reqs[1].Line)
	}
}

func TestParseBatchInputReportsFirstBadLine(t *testing.T) {
	long := strings.Repeat("x", MaxCustomIDLength+1)
	cases := []struct {
		name, input, endpoint string
		line                  int
		reason                string
	}{
		{"not json", chat("a") + "\nnope\n", EndpointChatCompletions, 2, "not a JSON object"},
		{"broken json", chat("a") + "\n{\"custom_id\":\n", EndpointChatCompletions, 2, "not valid JSON"},
		{"array", "[1]\n", EndpointChatCompletions, 1, "not a JSON object"},
		{"missing id", `{"body":{"messages":[{"role":"user"}]}}`, EndpointChatCompletions, 1, "custom_id is missing"},
		{"numeric id", `{"custom_id":5,"body":{"messages":[{"role":"user"}]}}`, EndpointChatCompletions, 1, "custom_id must be a string"},
		{"empty id", chat(""), EndpointChatCompletions, 1, "custom_id is empty"},
		{"long id", chat(long), EndpointChatCompletions, 1, "65 characters"},
		{"duplicate", chat("a") + "\n" + chat("b") + "\n" + chat("a"), EndpointChatCompletions, 3, `"a" is already used on line 1`},
		{"no body", `{"custom_id":"a"}`, EndpointChatCompletions, 1, "body is missing"},
		{"body string", `{"custom_id":"a","body":"x"}`, EndpointChatCompletions, 1, "body must be a JSON object"},
		{"no messages", `{"custom_id":"a","body":{"prompt":"x"}}`, EndpointChatCompletions, 1, "no messages"},
		{"empty messages", `{"custom_id":"a","body":{"messages":[]}}`, EndpointChatCompletions, 1, "messages is empty"},
		{"message no role", `{"custom_id":"a","body":{"messages":[{"content":"x"}]}}`, EndpointChatCompletions, 1, "messages[0] has no role"},
		{"an endpoint a batch cannot use", `{"custom_id":"a","body":{"prompt":"x"}}`, "/v1/completions", 1, "not one the operator can validate"},
		{"audio no file", `{"custom_id":"a","body":{"model":"w"}}`, EndpointAudioTranscriptions, 1, "no file"},
		{"blank line", chat("a") + "\n\n" + chat("b"), EndpointChatCompletions, 2, "empty"},
		{"empty file", "", EndpointChatCompletions, 1, "no requests"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBatchInput(strings.NewReader(tc.input), tc.endpoint)
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("want a *LineError, got %v", err)
			}
			if le.Line != tc.line || !strings.Contains(le.Reason, tc.reason) {
				t.Fatalf("got line %d %q, want line %d containing %q", le.Line, le.Reason, tc.line, tc.reason)
			}
		})
	}
}

func TestSplitBatchRequestsKeepsOrder(t *testing.T) {
	var reqs []BatchRequest
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		reqs = append(reqs, BatchRequest{CustomID: id, Line: []byte(chat(id))})
	}
	parts := SplitBatchRequests(reqs, 3)
	if len(parts) != 3 || len(parts[0]) != 3 || len(parts[2]) != 1 || parts[2][0].CustomID != "g" {
		t.Fatalf("bad split: %v", parts)
	}
	if got := SplitBatchRequests(reqs, 0); len(got) != 1 || len(got[0]) != 7 {
		t.Fatalf("max 0 must mean one part, got %d", len(got))
	}
	enc := EncodeBatchRequests(parts[1])
	if string(enc) != chat("d")+"\n"+chat("e")+"\n"+chat("f")+"\n" {
		t.Fatalf("encoding changed lines: %q", enc)
	}
}

// FuzzCheckBatchLine checks that the validator never panics and that whatever
// it accepts really has a usable custom_id and body.
func FuzzCheckBatchLine(f *testing.F) {
	for _, s := range []string{
		chat("a"), chat(""), `{"custom_id":"a","body":{"prompt":"x"}}`, `{"custom_id":null}`,
		`{"custom_id":"a","body":{"messages":[null]}}`, `{"custom_id":"a","body":{"messages":[{"role":1}]}}`,
		`[]`, `{`, ``, `{"custom_id":"\u00e9","body":{"file":"x"}}`, `{"custom_id":"a","body":null}`,
	} {
		for _, ep := range []string{EndpointChatCompletions, EndpointAudioTranslations, "/v1/completions"} {
			f.Add([]byte(s), ep)
		}
	}
	f.Fuzz(func(t *testing.T, line []byte, endpoint string) {
		id, err := CheckBatchLine(line, endpoint)
		if err != nil {
			if id != "" {
				t.Fatalf("rejected line returned custom_id %q", id)
			}
			return
		}
		if id == "" || len([]rune(id)) > MaxCustomIDLength {
			t.Fatalf("accepted line with bad custom_id %q", id)
		}
		reqs, err := ParseBatchInput(bytes.NewReader(append(bytes.ReplaceAll(line, []byte("\n"), nil), '\n')), endpoint)
		if err == nil && (len(reqs) != 1 || reqs[0].CustomID != id) {
			t.Fatalf("ParseBatchInput disagrees with CheckBatchLine: %v", reqs)
		}
	})
}
