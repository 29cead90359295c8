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
	"testing/iotest"
)

func TestValidateFineTuneAccepts(t *testing.T) {
	cases := map[string]struct {
		in     string
		format FineTuneFormat
		n      int
	}{
		"conversational": {
			in: `{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello","weight":1}]}
{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"},{"role":"assistant","content":"d","weight":0}]}
`,
			format: FormatConversational, n: 2,
		},
		"instruction":             {in: "{\"prompt\":\"2+2\",\"completion\":\"4\"}\n{\"prompt\":\"\",\"completion\":\"x\"}", format: FormatInstruction, n: 2},
		"text with extra keys":    {in: `{"text":"hello","source":"wiki"}`, format: FormatText, n: 1},
		"trailing blank lines":    {in: "{\"text\":\"a\"}\n\n\n", format: FormatText, n: 1},
		"crlf line endings":       {in: "{\"text\":\"a\"}\r\n{\"text\":\"b\"}\r\n", format: FormatText, n: 2},
		"leading and trailing ws": {in: "  {\"text\":\"a\"}  \n", format: FormatText, n: 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			rep, err := ValidateFineTune(strings.NewReader(tc.in))
			if err != nil {
				t.Fatalf("ValidateFineTune: %v", err)
			}
			if rep.Format != tc.format || rep.Examples != tc.n {
				t.Fatalf("got %+v, want format %s with %d examples", rep, tc.format, tc.n)
			}
		})
	}
}

func TestValidateFineTuneRejects(t *testing.T) {
	good := `{"text":"ok"}` + "\n"
	cases := map[string]struct {
		in     string
		line   int
		reason string
	}{
		"empty file":                {in: "", line: 1, reason: "no examples"},
		"only blank lines":          {in: "\n  \n", line: 1, reason: "no examples"},
		"invalid json":              {in: good + `{"text": "unterminated}` + "\n", line: 2, reason: "invalid JSON"},
		"not an object":             {in: good + good + `["text"]`, line: 3, reason: "not a JSON object"},
		"trailing garbage":          {in: `{"text":"a"} x`, line: 1, reason: "invalid JSON"},
		"unknown keys":              {in: `{"input":"a"}`, line: 1, reason: "no known keys"},
		"mixed keys in a line":      {in: `{"text":"a","prompt":"b","completion":"c"}`, line: 1, reason: "mixes keys"},
		"mixed formats in a file":   {in: good + `{"prompt":"a","completion":"b"}`, line: 2, reason: "line 1 is in text format"},
		"prompt without completion": {in: `{"prompt":"a"}`, line: 1, reason: `needs both "prompt" and "completion"`},
		"completion not a string":   {in: `{"prompt":"a","completion":4}`, line: 1, reason: "must be strings"},
		"text not a string":         {in: `{"text":null}`, line: 1, reason: `"text" must be a string`},
		"blank line in the middle":  {in: good + "\n" + good, line: 2, reason: "empty line"},
		"messages not a list":       {in: `{"messages":"hi"}`, line: 1, reason: "must be a list"},
		"messages empty":            {in: `{"messages":[]}`, line: 1, reason: "is empty"},
		"message not an object":     {in: `{"messages":["hi"]}`, line: 1, reason: "messages[0] must be an object"},
		"message without role":      {in: `{"messages":[{"content":"hi"}]}`, line: 1, reason: `messages[0] has no "role"`},
		"message without content":   {in: `{"messages":[{"role":"user"}]}`, line: 1, reason: `messages[0] needs a string "content"`},
		"unknown role":              {in: `{"messages":[{"role":"tool","content":"x"}]}`, line: 1, reason: `role "tool"`},
		"starts with assistant":     {in: `{"messages":[{"role":"assistant","content":"x"}]}`, line: 1, reason: "starts with an assistant"},
		"two users in a row": {
			in:   `{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}`,
			line: 1, reason: "messages[1] follows another user",
		},
		"assistant after system": {
			in:   `{"messages":[{"role":"system","content":"a"},{"role":"assistant","content":"b"}]}`,
			line: 1, reason: "messages[1] is an assistant message after system",
		},
		"late system message": {
			in:   `{"messages":[{"role":"user","content":"a"},{"role":"system","content":"b"}]}`,
			line: 1, reason: "only the first message",
		},
		"bad weight": {
			in:   `{"messages":[{"role":"user","content":"a","weight":2}]}`,
			line: 1, reason: "weight must be 0 or 1",
		},
		"line too long": {in: good + `{"text":"` + strings.Repeat("a", MaxLineBytes) + `"}`, line: 2, reason: "longer than"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ValidateFineTune(strings.NewReader(tc.in))
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("got error %v, want a *LineError", err)
			}
			if le.Line != tc.line || !strings.Contains(le.Reason, tc.reason) {
				t.Fatalf("got %q, want line %d with reason containing %q", le.Error(), tc.line, tc.reason)
			}
			if !strings.HasPrefix(le.Error(), "line ") {
				t.Fatalf("error %q should start with the line number", le.Error())
			}
		})
	}
}

func TestValidateFineTuneReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := ValidateFineTune(iotest.ErrReader(boom))
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the reader's error wrapped", err)
	}
	var le *LineError
	if errors.As(err, &le) {
		t.Fatalf("a read failure is not a line error: %v", err)
	}
}

// FuzzValidate checks properties that must hold for any input: no panic, the
// result does not depend on how the reader splits the bytes, a rejection names
// a line that exists, and an acceptance counts the non-blank lines.
func FuzzValidate(f *testing.F) {
	for _, seed := range []string{
		`{"text":"a"}`,
		"{\"prompt\":\"p\",\"completion\":\"c\"}\n{\"prompt\":\"q\",\"completion\":\"d\"}\n",
		`{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"},{"role":"assistant","content":"a","weight":0}]}`,
		`{"messages":[{"role":"assistant","content":"a"}]}`,
		"{\"text\":\"a\"}\n\n{\"text\":\"b\"}",
		"{\"text\":\"a\"}\n{\"prompt\":\"p\",\"completion\":\"c\"}",
		`{"messages":[1,2]}`,
		"\xff\xfe",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := ValidateFineTune(bytes.NewReader(data))
		rep2, err2 := ValidateFineTune(iotest.OneByteReader(bytes.NewReader(data)))
		if rep != rep2 || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("result depends on read sizes: %+v/%v vs %+v/%v", rep, err, rep2, err2)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("in-memory input gave a non-line error: %v", err)
			}
			if le.Line < 1 || le.Line > lines {
				t.Fatalf("line %d out of range 1..%d", le.Line, lines)
			}
			return
		}
		nonBlank := 0
		for _, l := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(l)) > 0 {
				nonBlank++
			}
		}
		if rep.Examples != nonBlank || rep.Examples == 0 {
			t.Fatalf("accepted %d examples, file has %d non-blank lines", rep.Examples, nonBlank)
		}
		switch rep.Format {
		case FormatConversational, FormatInstruction, FormatText:
		default:
			t.Fatalf("unknown format %q", rep.Format)
		}
	})
}
