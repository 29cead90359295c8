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

// Package fetch streams the results of a Together batch to where the user
// wants them: into a writer the operator turns into a ConfigMap, or into a
// file on a volume when the operator's image runs in fetch mode inside a Job.
//
// Outputs can be far larger than the operator's memory, so nothing here
// holds a whole file: bytes flow from the download through a SHA-256 hash
// and a line counter into the destination. Together does not keep requests
// in input order, and a split batch has one output per part; when the input
// files are known, each part's output is spooled (to a temporary file, or to
// memory for small ConfigMap outputs) and written back in the order of the
// input's custom_ids, part after part. Only one offset per record is kept in
// memory, never the records themselves.
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
	"hash"
	"io"
	"sort"
)

// Downloader streams a Together file's content. *together.Client
// implements it.
type Downloader interface {
	DownloadFile(ctx context.Context, id string) (io.ReadCloser, error)
}

// Part is the files of one Together batch. Parts are written in the order
// given, which is the order of the input they were split from.
type Part struct {
	// InputFileID, when set, makes Fetch write this part's output records in
	// the order of the input file's custom_ids.
	InputFileID string `json:"inputFileID,omitempty"`
	// OutputFileID holds the successful requests' responses.
	OutputFileID string `json:"outputFileID,omitempty"`
	// ErrorFileID holds the failed requests; a COMPLETED batch can have one.
	ErrorFileID string `json:"errorFileID,omitempty"`
}

// Result says what was written so that a person can verify the copy.
type Result struct {
	// Bytes, SHA256 and Records describe the merged output.
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"`
	Records int64  `json:"records"`
	// ErrorBytes, ErrorSHA256 and FailedRecords describe the merged errors.
	ErrorBytes    int64  `json:"errorBytes"`
	ErrorSHA256   string `json:"errorSHA256"`
	FailedRecords int64  `json:"failedRecords"`
	// Usage adds up response.body.usage of every output line: a batch
	// object carries no token counts, so the output file is where they are
	// (skills together-batch-inference api-reference.md).
	Usage Usage `json:"usage"`
}

// Usage is a sum of token counts.
type Usage struct {
	PromptTokens     int64 `json:"promptTokens"`
	CompletionTokens int64 `json:"completionTokens"`
	TotalTokens      int64 `json:"totalTokens"`
	// Lines counts the output lines that carried a usage object.
	Lines int64 `json:"lines"`
	// Uncounted counts lines longer than MaxUsageLineBytes, whose usage was
	// not read (the line itself is written whole).
	Uncounted int64 `json:"uncounted,omitempty"`
}

// MaxUsageLineBytes bounds the memory spent reading one line's usage: a
// longer line is written whole but its tokens are not counted (Uncounted
// says how many such lines there were).
const MaxUsageLineBytes = 1 << 20

// outputLine is the part of a batch output line that holds its usage:
// {"custom_id", "response": {"status_code", "body": {…, "usage":
// {prompt_tokens, completion_tokens, total_tokens}}}}.
type outputLine struct {
	Response struct {
		Body struct {
			Usage *struct {
				PromptTokens     int64 `json:"prompt_tokens"`
				CompletionTokens int64 `json:"completion_tokens"`
				TotalTokens      int64 `json:"total_tokens"`
			} `json:"usage"`
		} `json:"body"`
	} `json:"response"`
}

// add counts one output line's usage; a line without one adds nothing.
func (u *Usage) add(line []byte) {
	var l outputLine
	if json.Unmarshal(line, &l) != nil || l.Response.Body.Usage == nil {
		return
	}
	us := l.Response.Body.Usage
	total := us.TotalTokens
	if total == 0 {
		total = us.PromptTokens + us.CompletionTokens
	}
	u.PromptTokens += us.PromptTokens
	u.CompletionTokens += us.CompletionTokens
	u.TotalTokens += total
	u.Lines++
}

// ErrTooLarge is returned when the output and errors together exceed
// Options.Limit; what was written so far must be discarded.
var ErrTooLarge = errors.New("batch output exceeds the size limit")

// MaxLineBytes bounds one output record; responses are long but never this
// long, and the bound keeps a file without newlines from being buffered.
const MaxLineBytes = 16 << 20

// Spool is temporary storage for one part's output while it is reordered.
type Spool interface {
	io.Writer
	io.ReaderAt
	// Reset empties the spool for the next part.
	Reset() error
}

// Options tune Fetch.
type Options struct {
	// Limit bounds output plus errors in bytes; zero means no limit.
	Limit int64
	// Spool returns the storage used to reorder a part's output; nil means
	// memory, which is fine only together with a small Limit.
	Spool Spool
}

// Fetch downloads every part's output into out and every part's errors into
// errOut (which may be nil to discard them while still counting), and
// reports sizes, checksums and record counts of what was written.
func Fetch(ctx context.Context, d Downloader, parts []Part, out, errOut io.Writer, o Options) (Result, error) {
	budget := &budget{left: o.Limit, limited: o.Limit > 0}
	outW := newCountingWriter(out, budget)
	outW.usage = &Usage{}
	if errOut == nil {
		errOut = io.Discard
	}
	errW := newCountingWriter(errOut, budget)
	spool := o.Spool
	if spool == nil {
		spool = &MemorySpool{}
	}
	for i, p := range parts {
		if p.OutputFileID != "" {
			if err := fetchOutput(ctx, d, p, outW, spool); err != nil {
				return Result{}, fmt.Errorf("part %d: output file %s: %w", i, p.OutputFileID, err)
			}
		}
		if p.ErrorFileID != "" {
			if err := errW.startRecord(); err != nil {
				return Result{}, fmt.Errorf("part %d: error file %s: %w", i, p.ErrorFileID, err)
			}
			if err := download(ctx, d, p.ErrorFileID, errW); err != nil {
				return Result{}, fmt.Errorf("part %d: error file %s: %w", i, p.ErrorFileID, err)
			}
		}
	}
	return Result{
		Bytes: outW.n, SHA256: outW.sum(), Records: outW.records(),
		ErrorBytes: errW.n, ErrorSHA256: errW.sum(), FailedRecords: errW.records(),
		Usage: outW.finishUsage(),
	}, nil
}

// fetchOutput writes one part's output, in input order when its input file
// is known and as served otherwise.
func fetchOutput(ctx context.Context, d Downloader, p Part, w *countingWriter, spool Spool) error {
	if p.InputFileID == "" {
		if err := w.startRecord(); err != nil {
			return err
		}
		return download(ctx, d, p.OutputFileID, w)
	}
	rank, err := inputOrder(ctx, d, p.InputFileID)
	if err != nil {
		return fmt.Errorf("reading input order from %s: %w", p.InputFileID, err)
	}
	if err := spool.Reset(); err != nil {
		return fmt.Errorf("emptying spool: %w", err)
	}
	// The spool is bounded by the same budget as the destination, so that
	// an oversized output is refused before it fills memory or disk.
	var sw io.Writer = spool
	if w.b.limited {
		sw = &limitWriter{w: spool, left: w.b.left}
	}
	size, err := downloadTo(ctx, d, p.OutputFileID, sw)
	if err != nil {
		return err
	}
	recs, err := indexRecords(io.NewSectionReader(spool, 0, size), rank)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := w.startRecord(); err != nil {
			return err
		}
		if _, err := io.Copy(w, io.NewSectionReader(spool, r.off, r.len)); err != nil {
			return fmt.Errorf("writing record: %w", err)
		}
	}
	return nil
}

// limitWriter refuses to write more than left bytes.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, ErrTooLarge
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

// record locates one output line in the spool.
type record struct {
	rank     int
	off, len int64
}

// indexRecords scans spooled output lines and returns their locations sorted
// by their custom_id's position in the input; lines whose custom_id the
// input does not hold keep their place after all known ones.
func indexRecords(r io.Reader, rank map[string]int) ([]record, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var recs []record
	var off int64
	unknown := len(rank)
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			var l struct {
				CustomID string `json:"custom_id"`
			}
			rk, ok := 0, false
			if json.Unmarshal(line, &l) == nil {
				rk, ok = rank[l.CustomID]
			}
			if !ok {
				rk = unknown
				unknown++
			}
			recs = append(recs, record{rank: rk, off: off, len: int64(len(line))})
			off += int64(len(line))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("indexing output: %w", err)
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].rank < recs[j].rank })
	return recs, nil
}

// readLine returns the next line including its newline, refusing lines
// longer than MaxLineBytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxLineBytes {
			return nil, fmt.Errorf("a record is longer than %d bytes", MaxLineBytes)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return line, err
	}
}

// inputOrder reads an input file and maps each custom_id to its position.
func inputOrder(ctx context.Context, d Downloader, id string) (map[string]int, error) {
	rc, err := d.DownloadFile(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("downloading: %w", err)
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	rank := map[string]int{}
	for sc.Scan() {
		var l struct {
			CustomID string `json:"custom_id"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.CustomID != "" {
			if _, dup := rank[l.CustomID]; !dup {
				rank[l.CustomID] = len(rank)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	return rank, nil
}

// download streams one file into w.
func download(ctx context.Context, d Downloader, id string, w io.Writer) error {
	_, err := downloadTo(ctx, d, id, w)
	return err
}

func downloadTo(ctx context.Context, d Downloader, id string, w io.Writer) (int64, error) {
	rc, err := d.DownloadFile(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("downloading: %w", err)
	}
	defer rc.Close()
	n, err := io.Copy(w, rc)
	if err != nil {
		return n, fmt.Errorf("copying after %d bytes: %w", n, err)
	}
	return n, nil
}

// budget is the byte allowance shared by the output and the errors, which
// end up in the same ConfigMap.
type budget struct {
	left    int64
	limited bool
}

// countingWriter hashes, counts bytes and lines, and enforces the budget
// before anything reaches the destination.
type countingWriter struct {
	w     io.Writer
	h     hash.Hash
	b     *budget
	n     int64
	lines int64
	last  byte
	// usage, when set, is summed from each complete line written; line
	// holds the current line (bounded by MaxLineBytes: a longer one is
	// not counted).
	usage    *Usage
	line     []byte
	overlong bool
}

func newCountingWriter(w io.Writer, b *budget) *countingWriter {
	return &countingWriter{w: w, h: sha256.New(), b: b}
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.b.limited {
		if int64(len(p)) > c.b.left {
			return 0, ErrTooLarge
		}
		c.b.left -= int64(len(p))
	}
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	rest := p[:n]
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		c.lines++
		c.takeLine(rest[:i])
		rest = rest[i+1:]
	}
	if c.usage != nil && !c.overlong && len(rest) > 0 {
		if len(c.line)+len(rest) > MaxUsageLineBytes {
			c.overlong, c.line = true, nil
		} else {
			c.line = append(c.line, rest...)
		}
	}
	if n > 0 {
		c.last = p[n-1]
	}
	return n, err
}

// takeLine finishes the current line with tail and counts its usage.
func (c *countingWriter) takeLine(tail []byte) {
	if c.usage == nil {
		return
	}
	switch {
	case c.overlong || len(c.line)+len(tail) > MaxUsageLineBytes:
		c.usage.Uncounted++
	case len(c.line) == 0:
		c.usage.add(tail)
	default:
		c.usage.add(append(c.line, tail...))
	}
	c.line, c.overlong = c.line[:0], false
}

// finishUsage counts a last line without its newline and returns the sum.
func (c *countingWriter) finishUsage() Usage {
	if c.usage == nil {
		return Usage{}
	}
	if len(c.line) > 0 || c.overlong {
		c.takeLine(nil)
	}
	return *c.usage
}

// startRecord terminates a previous line that lacks its newline before more
// is written, so that records from several files stay one per line while a
// single file is copied byte for byte.
func (c *countingWriter) startRecord() error {
	if c.n > 0 && c.last != '\n' {
		if _, err := c.Write([]byte{'\n'}); err != nil {
			return err
		}
	}
	return nil
}

// records counts lines, including a last one without its newline.
func (c *countingWriter) records() int64 {
	if c.n > 0 && c.last != '\n' {
		return c.lines + 1
	}
	return c.lines
}

func (c *countingWriter) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }

// MemorySpool keeps a part in memory; use it only under a small Limit.
type MemorySpool struct{ buf []byte }

// Write appends to the spool.
func (m *MemorySpool) Write(p []byte) (int, error) { m.buf = append(m.buf, p...); return len(p), nil }

// ReadAt reads spooled bytes.
func (m *MemorySpool) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.buf)) {
		return 0, io.EOF
	}
	n := copy(p, m.buf[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Reset empties the spool, keeping its memory for the next part.
func (m *MemorySpool) Reset() error { m.buf = m.buf[:0]; return nil }
