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
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/together-operator/together-operator/internal/together"
)

// APIKeyEnv is the environment variable the fetch mode reads the API key
// from. The operator fills it from a Secret so the key never shows in the
// Job's arguments.
const APIKeyEnv = "TOGETHER_API_KEY"

// DefaultResultFile is where the fetch mode reports its Result: the
// container's termination message, which the operator reads from the Pod
// status without needing any access to the volume.
const DefaultResultFile = "/dev/termination-log"

// Config is what the fetch mode needs, parsed from its arguments.
type Config struct {
	Parts      []Part
	Path       string
	ErrorsPath string
	BaseURL    string
	APIKey     string
	ResultFile string
}

// ErrorsPathFor names the errors file written next to an output file:
// out.jsonl gets out.errors.jsonl.
func ErrorsPathFor(path string) string {
	return strings.TrimSuffix(path, ".jsonl") + ".errors.jsonl"
}

// PartArg renders a part as the value of the --part flag.
func PartArg(p Part) string {
	var kv []string
	for _, f := range [][2]string{{"output", p.OutputFileID}, {"error", p.ErrorFileID}, {"input", p.InputFileID}} {
		if f[1] != "" {
			kv = append(kv, f[0]+"="+f[1])
		}
	}
	return strings.Join(kv, ",")
}

func parsePart(v string) (Part, error) {
	var p Part
	for kv := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || val == "" {
			return p, fmt.Errorf("--part %q: want output=ID[,error=ID][,input=ID]", v)
		}
		switch k {
		case "output":
			p.OutputFileID = val
		case "error":
			p.ErrorFileID = val
		case "input":
			p.InputFileID = val
		default:
			return p, fmt.Errorf("--part %q: unknown key %q", v, k)
		}
	}
	return p, nil
}

// ParseArgs reads the fetch mode's flags; the API key comes from the
// environment only.
func ParseArgs(args []string, getenv func(string) string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	fs.Func("part", "one batch's files as output=ID[,error=ID][,input=ID]; repeat in input order", func(v string) error {
		p, err := parsePart(v)
		if err == nil {
			c.Parts = append(c.Parts, p)
		}
		return err
	})
	fs.StringVar(&c.Path, "path", "", "file to write the merged output to")
	fs.StringVar(&c.ErrorsPath, "errors-path", "", "file to write the merged errors to (default: next to --path, .errors.jsonl)")
	fs.StringVar(&c.BaseURL, "base-url", together.DefaultBaseURL, "Together API base URL")
	fs.StringVar(&c.ResultFile, "result-file", DefaultResultFile, "where to write the JSON result")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if len(c.Parts) == 0 || c.Path == "" {
		return c, errors.New("fetch: --part and --path are required")
	}
	if c.ErrorsPath == "" {
		c.ErrorsPath = ErrorsPathFor(c.Path)
	}
	c.APIKey = getenv(APIKeyEnv)
	if c.APIKey == "" {
		return c, fmt.Errorf("fetch: environment variable %s is empty", APIKeyEnv)
	}
	return c, nil
}

// Main is the operator image's fetch mode: `manager fetch --part ... --path
// ...`. It returns the process exit code; a non-zero code makes the Job
// retry or fail, which the operator follows.
func Main(ctx context.Context, args []string) int {
	c, err := ParseArgs(args, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cl, err := together.New(together.Options{BaseURL: c.BaseURL, APIKey: c.APIKey})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetch:", err)
		return 1
	}
	res, err := ToFiles(ctx, cl, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetch:", err)
		_ = os.WriteFile(c.ResultFile, []byte(truncate(err.Error(), 3000)), 0o644)
		return 1
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	if err := os.WriteFile(c.ResultFile, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "fetch: writing result:", err)
		return 1
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// ToFiles fetches c.Parts into c.Path and c.ErrorsPath. Each file is written
// under a temporary name and renamed only when complete and synced, so that
// a reader never sees half an output and a retried Job starts clean.
func ToFiles(ctx context.Context, d Downloader, c Config) (Result, error) {
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o755); err != nil {
		return Result{}, fmt.Errorf("creating directory for %s: %w", c.Path, err)
	}
	out, err := os.Create(c.Path + ".tmp")
	if err != nil {
		return Result{}, fmt.Errorf("creating output: %w", err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	errOut, err := os.Create(c.ErrorsPath + ".tmp")
	if err != nil {
		return Result{}, fmt.Errorf("creating errors file: %w", err)
	}
	defer os.Remove(errOut.Name())
	defer errOut.Close()
	spool, err := NewFileSpool(c.Path + ".spool")
	if err != nil {
		return Result{}, err
	}
	defer spool.Close()

	res, err := Fetch(ctx, d, c.Parts, out, errOut, Options{Spool: spool})
	if err != nil {
		return Result{}, err
	}
	for _, f := range []struct {
		file *os.File
		path string
	}{{out, c.Path}, {errOut, c.ErrorsPath}} {
		if err := f.file.Sync(); err != nil {
			return Result{}, fmt.Errorf("syncing %s: %w", f.path, err)
		}
		if err := f.file.Close(); err != nil {
			return Result{}, fmt.Errorf("closing %s: %w", f.path, err)
		}
		if err := os.Rename(f.file.Name(), f.path); err != nil {
			return Result{}, fmt.Errorf("renaming into %s: %w", f.path, err)
		}
	}
	return res, nil
}

// FileSpool keeps a part on disk while it is reordered.
type FileSpool struct{ f *os.File }

// NewFileSpool creates (or truncates) the spool file at path.
func NewFileSpool(path string) (*FileSpool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating spool: %w", err)
	}
	return &FileSpool{f: f}, nil
}

// Write appends to the spool.
func (s *FileSpool) Write(p []byte) (int, error) { return s.f.Write(p) }

// ReadAt reads spooled bytes.
func (s *FileSpool) ReadAt(p []byte, off int64) (int, error) { return s.f.ReadAt(p, off) }

// Reset empties the spool for the next part.
func (s *FileSpool) Reset() error {
	if err := s.f.Truncate(0); err != nil {
		return err
	}
	_, err := s.f.Seek(0, io.SeekStart)
	return err
}

// Close removes the spool file.
func (s *FileSpool) Close() error {
	err := s.f.Close()
	if rmErr := os.Remove(s.f.Name()); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}
