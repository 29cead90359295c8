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

package togethersim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
)

// maxUpload bounds one upload; Together's batch limit is 100 MB.
const maxUpload = 110 << 20

// file is a file's metadata plus where its bytes live: a content-addressed
// blob (by sha256), or a generator for cheap large test files.
type file struct {
	fileObject
	blob      string
	generated int64
}

// File is what AddFile and AddGeneratedFile return.
type File struct {
	ID    string
	Bytes int64
}

func (f *file) public() File { return File{ID: f.ID, Bytes: f.Bytes} }

// File processing states (GO file.go FileResponseProcessingStatus). Only
// fine-tune files are validated; other purposes skip it.
const (
	filePending       = "PENDING"
	fileQueued        = "QUEUED"
	fileRunning       = "RUNNING"
	fileCompleted     = "COMPLETED"
	fileInvalidFormat = "INVALID_FORMAT"
)

// AddGeneratedFile registers a file of size bytes whose content is produced
// on the fly when downloaded, so tests can stream 100 MiB without the
// simulator holding it. The content is a repeating pattern; see
// GeneratedContent for the same bytes.
func (s *Server) AddGeneratedFile(size int64) File {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &file{fileObject: s.newFileMeta("generated.bin", "batch-generated", size), generated: size}
	s.files[f.ID] = f
	return f.public()
}

// GeneratedContent returns a reader of the first size bytes of the pattern
// AddGeneratedFile serves.
func GeneratedContent(size int64) io.Reader {
	return io.LimitReader(patternReader{}, size)
}

type patternReader struct{}

func (patternReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	return len(p), nil
}

// AddFile stores content as a file with purpose, as if uploaded earlier: a
// fine-tune file has already been through validation.
func (s *Server) AddFile(name, purpose string, content []byte) File {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.storeFile(name, purpose, content)
	for f.ProcessingStatus != "" && f.ProcessingStatus != fileCompleted && f.ProcessingStatus != fileInvalidFormat {
		s.stepFile(f)
	}
	return f.public()
}

// FileStatus returns a file's processing_status ("" for files that skip
// validation, or for an unknown file).
func (s *Server) FileStatus(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.files[id]; ok {
		return f.ProcessingStatus
	}
	return ""
}

// storeFile keeps content once per sha256; callers hold s.mu.
func (s *Server) storeFile(name, purpose string, content []byte) *file {
	sum := sha256.Sum256(content)
	key := hex.EncodeToString(sum[:])
	if _, ok := s.blobs[key]; !ok {
		s.blobs[key] = content
	}
	f := &file{fileObject: s.newFileMeta(name, purpose, int64(len(content))), blob: key}
	if purpose == "fine-tune" {
		f.ProcessingStatus = filePending
	}
	s.files[f.ID] = f
	return f
}

func (s *Server) newFileMeta(name, purpose string, size int64) fileObject {
	return fileObject{
		ID: newID("file-"), Object: "file", CreatedAt: s.now().Unix(), Filename: name,
		Bytes: size, Purpose: purpose, FileType: fileTypeOf(name), Processed: true,
	}
}

// stepFile moves a fine-tune file one state through validation: PENDING →
// QUEUED → RUNNING → COMPLETED, or INVALID_FORMAT with the report's error
// naming the first bad line (SK together-fine-tuning data-formats.md);
// callers hold s.mu.
func (s *Server) stepFile(f *file) {
	switch f.ProcessingStatus {
	case filePending:
		f.ProcessingStatus = fileQueued
	case fileQueued:
		f.ProcessingStatus = fileRunning
	case fileRunning:
		n, format, msg := validateTrainingData(s.blobs[f.blob])
		if msg != "" {
			f.ProcessingStatus = fileInvalidFormat
			f.ValidationReport = &validationReport{Valid: false, ErrorType: "INVALID_FORMAT", Error: msg, FileID: f.ID}
			return
		}
		f.ProcessingStatus = fileCompleted
		f.ValidationReport = &validationReport{Valid: true, DatasetFormat: format, FileID: f.ID, Nlines: n}
	}
}

// validateTrainingData checks each line against the accepted formats:
// conversational (messages), instruction (prompt + completion), generic
// (text) and preference (input + preferred_output + non_preferred_output).
func validateTrainingData(b []byte) (lines int64, format, msg string) {
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		lines++
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(line, &obj); err != nil {
			return lines, "", fmt.Sprintf("Line %d: not a JSON object", i+1)
		}
		f := ""
		switch {
		case obj["messages"] != nil:
			f = "CONVERSATION"
		case obj["prompt"] != nil && obj["completion"] != nil:
			f = "INSTRUCTION"
		case obj["text"] != nil:
			f = "GENERAL"
		case obj["input"] != nil && obj["preferred_output"] != nil && obj["non_preferred_output"] != nil:
			f = "PREFERENCE"
		default:
			return lines, "", fmt.Sprintf("Line %d: no known format (messages, prompt/completion, text, or preference fields)", i+1)
		}
		if format != "" && f != format {
			return lines, "", fmt.Sprintf("Line %d: format %s differs from the file's %s", i+1, f, format)
		}
		format = f
	}
	if lines == 0 {
		return 0, "", "the file has no samples"
	}
	return lines, format, ""
}

func fileTypeOf(name string) string {
	for _, t := range []string{"jsonl", "csv", "parquet"} {
		if len(name) > len(t) && name[len(name)-len(t)-1:] == "."+t {
			return t
		}
	}
	return "jsonl"
}

func (s *Server) uploadFile(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxUpload)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "invalid_multipart", "expected multipart/form-data: "+err.Error())
		return
	}
	form, content, err := readUpload(mr)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "invalid_multipart", err.Error())
		return
	}
	if msg := validateUpload(form, content); msg != "" {
		writeError(w, r, http.StatusBadRequest, "invalid_request", msg)
		return
	}
	s.mu.Lock()
	f := s.storeFile(form["file_name"], form["purpose"], content)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, f.fileObject)
}

func validateUpload(form map[string]string, content []byte) string {
	switch {
	case content == nil:
		return "file is required"
	case form["file_name"] == "":
		return "file_name is required"
	case form["purpose"] != "fine-tune" && form["purpose"] != "batch-api" && form["purpose"] != "eval":
		return fmt.Sprintf("purpose %q is not one of fine-tune, batch-api, eval", form["purpose"])
	}
	return ""
}

// readUpload reads the form fields and the "file" part. The simulator has
// to keep the bytes; the client side is what must stream.
func readUpload(mr *multipart.Reader) (map[string]string, []byte, error) {
	form := map[string]string{}
	var content []byte
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return form, content, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading multipart body: %w", err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, nil, fmt.Errorf("reading part %q: %w", p.FormName(), err)
		}
		if p.FormName() == "file" {
			content = b
		} else {
			form[p.FormName()] = string(b)
		}
	}
}

func (s *Server) lookupFile(w http.ResponseWriter, r *http.Request) *file {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[r.PathValue("id")]
	if !ok {
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("file %q not found", r.PathValue("id")))
	}
	return f
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request) {
	if f := s.lookupFile(w, r); f != nil {
		s.mu.Lock()
		obj := f.fileObject
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, obj)
	}
}

func (s *Server) listFiles(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]fileObject, 0, len(s.files))
	for _, id := range sortedKeys(s.files) {
		out = append(out, s.files[id].fileObject)
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}

// fileContent streams the bytes; generated files never exist in memory.
func (s *Server) fileContent(w http.ResponseWriter, r *http.Request) {
	f := s.lookupFile(w, r)
	if f == nil {
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(f.Bytes, 10))
	var src io.Reader
	if f.blob == "" {
		src = GeneratedContent(f.generated)
	} else {
		s.mu.Lock()
		src = bytes.NewReader(s.blobs[f.blob])
		s.mu.Unlock()
	}
	_, _ = io.Copy(w, src)
}

// content returns a stored file's bytes (nil for generated files).
func (s *Server) content(id string) []byte {
	f, ok := s.files[id]
	if !ok || f.blob == "" {
		return nil
	}
	return s.blobs[f.blob]
}
