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

// Package dataset checks training and batch input files before the operator
// uploads them, so that a mistake is reported on the resource (with the line
// that is wrong) instead of costing an upload and a failed remote job.
package dataset

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// FineTuneFormat is one of the JSONL layouts Together accepts for fine-tune
// training data. A file uses exactly one of them.
type FineTuneFormat string

const (
	// FormatConversational lines carry a "messages" list of chat turns.
	FormatConversational FineTuneFormat = "conversational"
	// FormatInstruction lines carry a "prompt" and a "completion".
	FormatInstruction FineTuneFormat = "instruction"
	// FormatText lines carry a single "text".
	FormatText FineTuneFormat = "text"
)

// MaxLineBytes is the longest line the validator reads. Long conversations
// are legitimate, so the limit is generous; it exists so that a file without
// newlines cannot make the operator buffer it whole.
const MaxLineBytes = 16 << 20

// LineError says which line of a file is wrong and why. Line is 1-based so it
// matches what an editor shows.
type LineError struct {
	Line   int
	Reason string
}

// Error renders the line number first, because that is what a person needs
// to find the problem.
func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
}

// FineTuneReport summarises a valid training file.
type FineTuneReport struct {
	// Format shared by every line.
	Format FineTuneFormat
	// Examples is the number of non-empty lines.
	Examples int
}

// ValidateFineTune reads JSONL training data from r and checks that every
// line is a JSON object in one accepted format and that all lines share that
// format. It stops at the first bad line and returns a *LineError naming it;
// other errors come from reading r. The input is streamed, so its size is
// bounded only by MaxLineBytes per line.
func ValidateFineTune(r io.Reader) (FineTuneReport, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	var (
		rep        FineTuneReport
		line       int
		firstLine  int
		blankSince int // first blank line of the current run, 0 if none
	)
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			if blankSince == 0 {
				blankSince = line
			}
			continue
		}
		if blankSince != 0 {
			return rep, &LineError{Line: blankSince, Reason: "empty line between examples; remove blank lines"}
		}
		f, reason := checkFineTuneLine(b)
		if reason != "" {
			return rep, &LineError{Line: line, Reason: reason}
		}
		if rep.Format == "" {
			rep.Format, firstLine = f, line
		} else if f != rep.Format {
			return rep, &LineError{Line: line, Reason: fmt.Sprintf(
				"example is in %s format but line %d is in %s format; use one format per file", f, firstLine, rep.Format)}
		}
		rep.Examples++
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return rep, &LineError{Line: line + 1, Reason: fmt.Sprintf("line is longer than %d bytes", MaxLineBytes)}
		}
		return rep, fmt.Errorf("reading training data: %w", err)
	}
	if rep.Examples == 0 {
		return rep, &LineError{Line: 1, Reason: "file has no examples; add at least one JSON line"}
	}
	return rep, nil
}

// checkFineTuneLine returns the format of one non-empty line, or a reason it
// is not acceptable.
func checkFineTuneLine(b []byte) (FineTuneFormat, string) {
	if b[0] != '{' {
		return "", "not a JSON object; each line must be one object such as {\"text\": \"...\"}"
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return "", "invalid JSON: " + err.Error()
	}
	_, hasMessages := obj["messages"]
	_, hasPrompt := obj["prompt"]
	_, hasCompletion := obj["completion"]
	_, hasText := obj["text"]
	n := 0
	for _, has := range []bool{hasMessages, hasPrompt || hasCompletion, hasText} {
		if has {
			n++
		}
	}
	switch {
	case n == 0:
		return "", `no known keys; use "messages" (conversational), "prompt" and "completion" (instruction), or "text"`
	case n > 1:
		return "", `mixes keys of different formats; use only one of "messages", "prompt"/"completion", or "text"`
	case hasMessages:
		return FormatConversational, checkMessages(obj["messages"])
	case hasText:
		if !isString(obj["text"]) {
			return "", `"text" must be a string`
		}
		return FormatText, ""
	default:
		if !hasPrompt || !hasCompletion {
			return "", `instruction format needs both "prompt" and "completion"`
		}
		if !isString(obj["prompt"]) || !isString(obj["completion"]) {
			return "", `"prompt" and "completion" must be strings`
		}
		return FormatInstruction, ""
	}
}

// message is one chat turn of the conversational format.
type message struct {
	Role    *string          `json:"role"`
	Content *json.RawMessage `json:"content"`
	Weight  *json.RawMessage `json:"weight"`
}

// checkMessages enforces Together's conversation shape: a non-empty list that
// starts with a system or user turn, has a system turn only first, and then
// alternates user and assistant.
func checkMessages(raw json.RawMessage) string {
	var msgs []json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil || msgs == nil {
		return `"messages" must be a list of {"role", "content"} objects`
	}
	if len(msgs) == 0 {
		return `"messages" is empty; add at least one turn`
	}
	prev := ""
	for i, rm := range msgs {
		var m message
		if len(bytes.TrimSpace(rm)) == 0 || rm[0] != '{' || json.Unmarshal(rm, &m) != nil {
			return fmt.Sprintf("messages[%d] must be an object with \"role\" and \"content\"", i)
		}
		if m.Role == nil {
			return fmt.Sprintf("messages[%d] has no \"role\"", i)
		}
		if m.Content == nil || !isString(*m.Content) {
			return fmt.Sprintf("messages[%d] needs a string \"content\"", i)
		}
		if m.Weight != nil {
			if w := string(*m.Weight); w != "0" && w != "1" {
				return fmt.Sprintf("messages[%d] has weight %s; weight must be 0 or 1", i, w)
			}
		}
		role := *m.Role
		switch role {
		case "system":
			if i != 0 {
				return fmt.Sprintf("messages[%d] is a system message; only the first message may be one", i)
			}
		case "user":
			if prev == "user" {
				return fmt.Sprintf("messages[%d] follows another user message; user and assistant must alternate", i)
			}
		case "assistant":
			if prev == "" {
				return "conversation starts with an assistant message; start with system or user"
			}
			if prev != "user" {
				return fmt.Sprintf("messages[%d] is an assistant message after %s; it must follow a user message", i, prev)
			}
		default:
			return fmt.Sprintf("messages[%d] has role %q; use system, user or assistant", i, role)
		}
		prev = role
	}
	return ""
}

// isString reports whether raw is a JSON string.
func isString(raw json.RawMessage) bool {
	var s string
	return len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil
}
