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

package fetch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/together-operator/together-operator/internal/together"
	"github.com/together-operator/together-operator/internal/togethersim"
)

const testKey = "sim-key-fetch"

func newSim(t *testing.T) (*togethersim.Server, *together.Client) {
	t.Helper()
	sim := togethersim.New(togethersim.Options{APIKey: testKey})
	if _, err := sim.Start(); err != nil {
		t.Fatalf("starting simulator: %v", err)
	}
	t.Cleanup(sim.Close)
	cl, err := together.New(together.Options{BaseURL: sim.URL(), APIKey: testKey})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return sim, cl
}

// runBatch uploads lines as one batch and drives the simulator until the
// batch completed.
func runBatch(t *testing.T, sim *togethersim.Server, cl *together.Client, ids []string, failing map[string]bool) Part {
	t.Helper()
	var in bytes.Buffer
	for _, id := range ids {
		content := "hello " + id
		if failing[id] {
			content = "please fail"
		}
		fmt.Fprintf(&in, `{"custom_id":%q,"body":{"messages":[{"role":"user","content":%q}]}}`+"\n", id, content)
	}
	ctx := context.Background()
	f, err := cl.UploadFile(ctx, "in.jsonl", together.FilePurposeBatch, &in)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	b, err := cl.CreateBatch(ctx, together.CreateBatchRequest{InputFileID: f.ID, Endpoint: "/v1/chat/completions", ModelID: "m"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	for range 10 {
		sim.Advance()
	}
	b, err = cl.GetBatch(ctx, b.ID)
	if err != nil || b.Status != together.BatchCompleted {
		t.Fatalf("batch did not complete: %+v %v", b, err)
	}
	return Part{InputFileID: f.ID, OutputFileID: b.OutputFileID, ErrorFileID: b.ErrorFileID}
}

func customIDs(t *testing.T, data []byte) []string {
	t.Helper()
	var ids []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l struct {
			CustomID string `json:"custom_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("output line is not JSON: %q", sc.Text())
		}
		ids = append(ids, l.CustomID)
	}
	return ids
}

func TestFetchMergesPartsInInputOrderAndCountsFailures(t *testing.T) {
	sim, cl := newSim(t)
	var all []string
	var parts []Part
	failing := map[string]bool{"r04": true, "r11": true}
	for p := range 3 {
		var ids []string
		for i := range 5 {
			ids = append(ids, fmt.Sprintf("r%02d", p*5+i))
		}
		all = append(all, ids...)
		parts = append(parts, runBatch(t, sim, cl, ids, failing))
	}
	var out, errs bytes.Buffer
	res, err := Fetch(context.Background(), cl, parts, &out, &errs, Options{})
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	var want []string
	for _, id := range all {
		if !failing[id] {
			want = append(want, id)
		}
	}
	if got := customIDs(t, out.Bytes()); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("output not in input order:\n got %v\nwant %v", got, want)
	}
	sum := sha256.Sum256(out.Bytes())
	if res.Records != 13 || res.FailedRecords != 2 || res.Bytes != int64(out.Len()) || res.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("result does not describe what was written: %+v (len %d)", res, out.Len())
	}
	if got := customIDs(t, errs.Bytes()); len(got) != 2 {
		t.Fatalf("want both failed requests in the errors, got %v", got)
	}
}

func TestFetchRefusesOutputOverLimit(t *testing.T) {
	sim, cl := newSim(t)
	big := sim.AddGeneratedFile(2 << 20)
	var out bytes.Buffer
	_, err := Fetch(context.Background(), cl, []Part{{OutputFileID: big.ID}}, &out, nil, Options{Limit: 1 << 20})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	if out.Len() > 1<<20 {
		t.Fatalf("wrote %d bytes past the limit", out.Len())
	}
	// The reordering path spools first; the spool must obey the limit too.
	part := runBatch(t, sim, cl, []string{"a", "b"}, nil)
	part.OutputFileID = big.ID
	spool := &MemorySpool{}
	_, err = Fetch(context.Background(), cl, []Part{part}, io.Discard, nil, Options{Limit: 1 << 20, Spool: spool})
	if !errors.Is(err, ErrTooLarge) || len(spool.buf) > 1<<20 {
		t.Fatalf("want ErrTooLarge with a bounded spool, got %v with %d spooled bytes", err, len(spool.buf))
	}
}

// TestToFilesStreams100MiBWithBoundedMemory runs the Job's fetch mode
// against the simulator and checks that memory does not grow with the file.
func TestToFilesStreams100MiBWithBoundedMemory(t *testing.T) {
	const size = 100 << 20
	sim, cl := newSim(t)
	f := sim.AddGeneratedFile(size)
	dir := t.TempDir()
	cfg := Config{Parts: []Part{{OutputFileID: f.ID}}, Path: filepath.Join(dir, "out", "result.jsonl")}
	cfg.ErrorsPath = ErrorsPathFor(cfg.Path)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res, err := ToFiles(context.Background(), cl, cfg)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	runtime.ReadMemStats(&after)
	// TotalAlloc counts every allocation made during the copy, live or
	// not: a fetch that buffered the file would allocate at least 100 MiB.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("fetch allocated %d MiB for a %d MiB file", grew>>20, size>>20)
	}
	h := sha256.New()
	if _, err := io.Copy(h, togethersim.GeneratedContent(size)); err != nil {
		t.Fatal(err)
	}
	if res.Bytes != size || res.SHA256 != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("result %+v does not match the served file", res)
	}
	st, err := os.Stat(cfg.Path)
	if err != nil || st.Size() != size {
		t.Fatalf("output file: %v, %v", st, err)
	}
	for _, leftover := range []string{cfg.Path + ".tmp", cfg.Path + ".spool"} {
		if _, err := os.Stat(leftover); !os.IsNotExist(err) {
			t.Fatalf("%s left behind", leftover)
		}
	}
}

func TestParseArgsTakesKeyFromEnvironmentOnly(t *testing.T) {
	p := Part{OutputFileID: "file-o", ErrorFileID: "file-e", InputFileID: "file-i"}
	args := []string{"--part", PartArg(p), "--part", PartArg(Part{OutputFileID: "file-2"}), "--path", "/data/x.jsonl", "--base-url", "http://sim"}
	c, err := ParseArgs(args, func(k string) string {
		if k == APIKeyEnv {
			return "secret"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Parts) != 2 || c.Parts[0] != p || c.Parts[1].OutputFileID != "file-2" || c.APIKey != "secret" ||
		c.ErrorsPath != "/data/x.errors.jsonl" || c.BaseURL != "http://sim" {
		t.Fatalf("parsed %+v", c)
	}
	if _, err := ParseArgs(args, func(string) string { return "" }); err == nil {
		t.Fatal("a missing API key must be an error")
	}
	if _, err := ParseArgs([]string{"--part", "bogus", "--path", "/x"}, func(string) string { return "k" }); err == nil {
		t.Fatal("a malformed --part must be an error")
	}
}

// sumUsage reads every output line's response.body.usage with a generic
// decoder, independently of Fetch's own reading.
func sumUsage(t *testing.T, data []byte) (prompt, completion, total int64) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		u := l["response"].(map[string]any)["body"].(map[string]any)["usage"].(map[string]any)
		prompt += int64(u["prompt_tokens"].(float64))
		completion += int64(u["completion_tokens"].(float64))
		total += int64(u["total_tokens"].(float64))
	}
	return
}

// TestFetchCountsUsageOnce: tokens come from the output lines' usage, each
// line counted once, across parts and whether or not the output is
// reordered, and written byte for byte whatever the write sizes.
func TestFetchCountsUsageOnce(t *testing.T) {
	sim, cl := newSim(t)
	a := runBatch(t, sim, cl, []string{"a1", "a2", "a3"}, map[string]bool{"a2": true})
	b := runBatch(t, sim, cl, []string{"b1", "b2"}, nil)
	for _, parts := range [][]Part{{a, b}, {{OutputFileID: a.OutputFileID}, {OutputFileID: b.OutputFileID}}} {
		var out bytes.Buffer
		res, err := Fetch(context.Background(), cl, parts, &out, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		p, c, tot := sumUsage(t, out.Bytes())
		if tot == 0 || res.Usage.PromptTokens != p || res.Usage.CompletionTokens != c || res.Usage.TotalTokens != tot || res.Usage.Lines != 4 {
			t.Errorf("usage = %+v, want prompt %d completion %d total %d over 4 lines", res.Usage, p, c, tot)
		}
	}
	// One byte at a time: lines split across writes still count once.
	var out bytes.Buffer
	w := newCountingWriter(&out, &budget{})
	w.usage = &Usage{}
	line := readGolden(t)
	for _, ch := range append(append(line, '\n'), line...) { // the second line lacks its newline
		if _, err := w.Write([]byte{ch}); err != nil {
			t.Fatal(err)
		}
	}
	if u := w.finishUsage(); u.TotalTokens != 30 || u.PromptTokens != 24 || u.CompletionTokens != 6 || u.Lines != 2 {
		t.Errorf("byte-wise usage = %+v, want 2 lines of 12+3=15", u)
	}
	// A line too long to read for usage is written whole and reported as
	// uncounted, not silently lost.
	out.Reset()
	w = newCountingWriter(&out, &budget{})
	w.usage = &Usage{}
	long := append([]byte(`{"pad":"`+strings.Repeat("x", MaxUsageLineBytes)+`",`), line[1:]...)
	for _, chunk := range [][]byte{long[:10], long[10:], {'\n'}, line, {'\n'}} {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if u := w.finishUsage(); u.Lines != 1 || u.Uncounted != 1 || u.TotalTokens != 15 || out.Len() != len(long)+len(line)+2 {
		t.Errorf("usage with an over-long line = %+v (wrote %d bytes)", u, out.Len())
	}
}

func readGolden(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "together", "testdata", "golden", "batch_output_line.json"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}
