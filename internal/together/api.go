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

package together

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// dataList is the {"data": [...]} wrapper most list routes use.
type dataList[T any] struct {
	Data []T `json:"data"`
}

// CreateFineTune starts a fine-tune job. It is not retried once the server
// may have acted (see checkRetry); set a unique Suffix so a caller can find
// the job with ListFineTunes after an ambiguous failure.
func (c *Client) CreateFineTune(ctx context.Context, req CreateFineTuneRequest) (*FineTune, error) {
	var ft FineTune
	return &ft, c.do(ctx, call{op: "CreateFineTune", method: http.MethodPost, path: "/fine-tunes", body: req}, &ft)
}

// GetFineTune reads one job in full, events included.
func (c *Client) GetFineTune(ctx context.Context, id string) (*FineTune, error) {
	var ft FineTune
	return &ft, c.do(ctx, get("GetFineTune", pathID("/fine-tunes", id)), &ft)
}

// ListFineTunes lists every job of the account (the API does not paginate).
// An item that does not decode is skipped, counted and logged rather than
// failing the whole list; ListFineTunesReport also returns what was skipped.
func (c *Client) ListFineTunes(ctx context.Context) ([]FineTune, error) {
	jobs, _, err := c.ListFineTunesReport(ctx)
	return jobs, err
}

// ListFineTunesReport is ListFineTunes plus the items it skipped.
func (c *Client) ListFineTunesReport(ctx context.Context) ([]FineTune, []MalformedItem, error) {
	var l dataList[json.RawMessage]
	if err := c.do(ctx, get("ListFineTunes", "/fine-tunes"), &l); err != nil {
		return nil, nil, err
	}
	jobs, bad := decodeItems[FineTune](c, "ListFineTunes", l.Data)
	return jobs, bad, nil
}

// CancelFineTune asks the server to stop a job; cancelling twice is
// harmless, so it is retried like a read.
func (c *Client) CancelFineTune(ctx context.Context, id string) (*FineTune, error) {
	var ft FineTune
	k := call{op: "CancelFineTune", method: http.MethodPost, path: pathID("/fine-tunes", id) + "/cancel", idempotent: true}
	return &ft, c.do(ctx, k, &ft)
}

// ListFineTuneEvents reads a job's event log.
func (c *Client) ListFineTuneEvents(ctx context.Context, id string) ([]FineTuneEvent, error) {
	var l dataList[FineTuneEvent]
	return l.Data, c.do(ctx, get("ListFineTuneEvents", pathID("/fine-tunes", id)+"/events"), &l)
}

// ListFineTuneCheckpoints reads a job's saved checkpoints.
func (c *Client) ListFineTuneCheckpoints(ctx context.Context, id string) ([]FineTuneCheckpoint, error) {
	var l dataList[FineTuneCheckpoint]
	return l.Data, c.do(ctx, get("ListFineTuneCheckpoints", pathID("/fine-tunes", id)+"/checkpoints"), &l)
}

// GetFineTuneMetrics reads every metrics row of a job; see
// ListFineTuneMetrics to read only new rows.
func (c *Client) GetFineTuneMetrics(ctx context.Context, id string) (*FineTuneMetrics, error) {
	return c.ListFineTuneMetrics(ctx, id, MetricsQuery{})
}

// ListFineTuneMetrics reads {"metrics":[{name: number}]} with the API's
// filters as query parameters (as together-go and together-typescript send
// them) and reduces the rows: train/global_step and train/loss of each
// training row, and the newest eval/loss.
func (c *Client) ListFineTuneMetrics(ctx context.Context, id string, q MetricsQuery) (*FineTuneMetrics, error) {
	v := url.Values{}
	if q.GlobalStepFrom > 0 {
		v.Set("global_step_from", strconv.FormatInt(q.GlobalStepFrom, 10))
	}
	if q.Resolution > 0 {
		v.Set("resolution", strconv.Itoa(q.Resolution))
	}
	p := pathID("/fine-tunes", id) + "/metrics"
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	var body struct {
		Metrics []map[string]float64 `json:"metrics"`
	}
	if err := c.do(ctx, get("GetFineTuneMetrics", p), &body); err != nil {
		return nil, err
	}
	return ReduceMetrics(body.Metrics), nil
}

// ReduceMetrics turns metrics rows, in the API's chronological order, into
// training rows and the newest evaluation loss.
func ReduceMetrics(rows []map[string]float64) *FineTuneMetrics {
	m := &FineTuneMetrics{}
	for _, row := range rows {
		step, hasStep := row[MetricTrainGlobalStep]
		if hasStep && (step < 0 || step != float64(int64(step))) {
			m.Skipped++
			continue
		}
		if ev, ok := row[MetricEvalLoss]; ok {
			m.EvalLoss = &ev
			m.EvalStep = int64(step)
			continue
		}
		if !hasStep {
			m.Skipped++
			continue
		}
		r := MetricRow{Step: int64(step)}
		if l, ok := row[MetricTrainLoss]; ok {
			r.Loss = &l
		}
		m.Train = append(m.Train, r)
	}
	return m
}

// CreateBatch submits a batch; the API answers 201 {job, warning}. Like
// CreateFineTune it is not retried once the server may have acted.
func (c *Client) CreateBatch(ctx context.Context, req CreateBatchRequest) (*Batch, error) {
	var body struct {
		Job     Batch  `json:"job"`
		Warning string `json:"warning"`
	}
	if err := c.do(ctx, call{op: "CreateBatch", method: http.MethodPost, path: "/batches", body: req}, &body); err != nil {
		return nil, err
	}
	body.Job.Warning = body.Warning
	return &body.Job, nil
}

// GetBatch reads one batch.
func (c *Client) GetBatch(ctx context.Context, id string) (*Batch, error) {
	var b Batch
	return &b, c.do(ctx, get("GetBatch", pathID("/batches", id)), &b)
}

// ListBatches lists every batch; this route answers a bare array. Like
// ListFineTunes it skips an item that does not decode.
func (c *Client) ListBatches(ctx context.Context) ([]Batch, error) {
	bs, _, err := c.ListBatchesReport(ctx)
	return bs, err
}

// ListBatchesReport is ListBatches plus the items it skipped.
func (c *Client) ListBatchesReport(ctx context.Context) ([]Batch, []MalformedItem, error) {
	var l []json.RawMessage
	if err := c.do(ctx, get("ListBatches", "/batches"), &l); err != nil {
		return nil, nil, err
	}
	bs, bad := decodeItems[Batch](c, "ListBatches", l)
	return bs, bad, nil
}

// CancelBatch cancels a batch that is still validating or in progress.
func (c *Client) CancelBatch(ctx context.Context, id string) (*Batch, error) {
	var b Batch
	k := call{op: "CancelBatch", method: http.MethodPost, path: pathID("/batches", id) + "/cancel", idempotent: true}
	return &b, c.do(ctx, k, &b)
}

// UploadFile uploads content as multipart form data, streaming it through
// an io.Pipe so that a large training file is never held in memory. A
// stream cannot be replayed, so uploads are never retried.
func (c *Client) UploadFile(ctx context.Context, fileName string, purpose FilePurpose, content io.Reader) (f *File, err error) {
	const op = "UploadFile"
	defer func() { c.counts.WithLabelValues(op, outcome(err)).Inc() }()
	ctx, cancel := context.WithTimeout(ctx, c.streamTimeout)
	defer cancel()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() { pw.CloseWithError(writeUpload(mw, fileName, purpose, content)) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/files/upload"), pr)
	if err != nil {
		_ = pr.CloseWithError(err)
		return nil, fmt.Errorf("together: %s: building request: %w", op, err)
	}
	c.authorize(req)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.http.Do(req)
	_ = pr.CloseWithError(io.ErrClosedPipe) // stops the writer if the server answered early
	if err != nil {
		return nil, fmt.Errorf("together: %s: %w", op, err)
	}
	if resp, err = c.check(op, resp); err != nil {
		return nil, err
	}
	defer drainClose(resp.Body)
	return decodeInto[File](op, resp.Body)
}

func writeUpload(mw *multipart.Writer, fileName string, purpose FilePurpose, content io.Reader) error {
	fields := [][2]string{{"purpose", string(purpose)}, {"file_name", fileName}}
	if ft := fileType(fileName); ft != "" {
		fields = append(fields, [2]string{"file_type", ft})
	}
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return fmt.Errorf("writing form field %s: %w", f[0], err)
		}
	}
	part, err := mw.CreateFormFile("file", path.Base(fileName))
	if err != nil {
		return fmt.Errorf("creating form file: %w", err)
	}
	if _, err := io.Copy(part, content); err != nil {
		return fmt.Errorf("streaming file content: %w", err)
	}
	return mw.Close()
}

// fileType derives the API's file_type from the file name's extension.
func fileType(name string) string {
	switch ext := strings.ToLower(path.Ext(name)); ext {
	case ".jsonl", ".csv", ".parquet":
		return ext[1:]
	}
	return ""
}

// GetFile reads one file's metadata.
func (c *Client) GetFile(ctx context.Context, id string) (*File, error) {
	var f File
	return &f, c.do(ctx, get("GetFile", pathID("/files", id)), &f)
}

// ListFiles lists every file of the account, skipping an item that does
// not decode.
func (c *Client) ListFiles(ctx context.Context) ([]File, error) {
	var l dataList[json.RawMessage]
	if err := c.do(ctx, get("ListFiles", "/files"), &l); err != nil {
		return nil, err
	}
	fs, _ := decodeItems[File](c, "ListFiles", l.Data)
	return fs, nil
}

// DownloadFile streams a file's content; the caller must close it. Only the
// request is retried: once the body starts flowing, the caller owns it.
func (c *Client) DownloadFile(ctx context.Context, id string) (rc io.ReadCloser, err error) {
	const op = "DownloadFile"
	defer func() { c.counts.WithLabelValues(op, outcome(err)).Inc() }()
	k := get(op, pathID("/files", id)+"/content")
	// The SDKs ask for the content as application/binary (together-go
	// file.go FileService.Content, together-typescript files.ts).
	k.accept = "application/binary"
	// The call's deadline covers getting the response; once its headers
	// are in, the body belongs to the caller and its context.
	ctx, cancel := context.WithCancel(ctx)
	deadline := time.AfterFunc(c.callTimeout, cancel)
	resp, err := c.send(ctx, k)
	if err != nil || !deadline.Stop() {
		cancel()
		if err == nil {
			drainClose(resp.Body)
			err = fmt.Errorf("together: %s: no response within %s", op, c.callTimeout)
		}
		return nil, err
	}
	return &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}, nil
}

// CreateEndpoint starts a dedicated endpoint; not retried once the server
// may have acted, as for every create.
func (c *Client) CreateEndpoint(ctx context.Context, req CreateEndpointRequest) (*Endpoint, error) {
	var e Endpoint
	return &e, c.do(ctx, call{op: "CreateEndpoint", method: http.MethodPost, path: "/endpoints", body: req}, &e)
}

// GetEndpoint reads one endpoint.
func (c *Client) GetEndpoint(ctx context.Context, id string) (*Endpoint, error) {
	var e Endpoint
	return &e, c.do(ctx, get("GetEndpoint", pathID("/endpoints", id)), &e)
}

// UpdateEndpoint patches an endpoint; a PATCH sets absolute values, so
// repeating it is harmless and it is retried.
func (c *Client) UpdateEndpoint(ctx context.Context, id string, req UpdateEndpointRequest) (*Endpoint, error) {
	var e Endpoint
	k := call{op: "UpdateEndpoint", method: http.MethodPatch, path: pathID("/endpoints", id), body: req, idempotent: true}
	return &e, c.do(ctx, k, &e)
}

// DeleteEndpoint deletes an endpoint.
func (c *Client) DeleteEndpoint(ctx context.Context, id string) error {
	return c.do(ctx, call{op: "DeleteEndpoint", method: http.MethodDelete, path: pathID("/endpoints", id), idempotent: true}, nil)
}

// ListEndpointsOptions filters ListEndpoints; zero values send no filter.
type ListEndpointsOptions struct {
	// Mine keeps only endpoints owned by the caller (mine=true).
	Mine bool
	// Type is EndpointTypeDedicated or EndpointTypeServerless; empty
	// lists both.
	Type string
}

// ListEndpoints lists endpoints, unpaginated, in the list envelope
// {"object":"list","data":[...]}. List items lack display_name, hardware and
// autoscaling, so those fields are zero in the result; GetEndpoint reads them.
func (c *Client) ListEndpoints(ctx context.Context, o ListEndpointsOptions) ([]Endpoint, error) {
	q := url.Values{}
	if o.Mine {
		q.Set("mine", "true")
	}
	if o.Type != "" {
		q.Set("type", o.Type)
	}
	p := "/endpoints"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var l dataList[Endpoint]
	return l.Data, c.do(ctx, get("ListEndpoints", p), &l)
}

// ListModels lists the models; this route answers a bare array.
func (c *Client) ListModels(ctx context.Context) ([]Model, error) {
	var l []json.RawMessage
	if err := c.do(ctx, get("ListModels", "/models"), &l); err != nil {
		return nil, err
	}
	ms, _ := decodeItems[Model](c, "ListModels", l)
	return ms, nil
}

// maxSupportedModelPages bounds how many pages ListSupportedModels follows,
// so a server that always answers a next_cursor cannot keep a caller forever.
const maxSupportedModelPages = 50

// ListSupportedModels reads every page of GET /v2/supported-models
// ({"data":[…], "next_cursor": str}, the cursor passed back as after;
// together-go betamodel.go ListSupported, packages/pagination
// CursorPagination). The v2 base is the v1 base with /v1 replaced by /v2.
func (c *Client) ListSupportedModels(ctx context.Context) ([]SupportedModel, error) {
	var out []SupportedModel
	after := ""
	for range maxSupportedModelPages {
		p := "/supported-models"
		if after != "" {
			p += "?" + url.Values{"after": {after}}.Encode()
		}
		var page struct {
			Data       []json.RawMessage `json:"data"`
			NextCursor string            `json:"next_cursor"`
		}
		k := get("ListSupportedModels", p)
		k.v2 = true
		if err := c.do(ctx, k, &page); err != nil {
			return nil, err
		}
		ms, _ := decodeItems[SupportedModel](c, "ListSupportedModels", page.Data)
		out = append(out, ms...)
		if page.NextCursor == "" || len(page.Data) == 0 || page.NextCursor == after {
			return out, nil
		}
		after = page.NextCursor
	}
	return out, fmt.Errorf("together: ListSupportedModels: more than %d pages", maxSupportedModelPages)
}

func get(op, p string) call {
	return call{op: op, method: http.MethodGet, path: p, idempotent: true}
}

func decodeInto[T any](op string, r io.Reader) (*T, error) {
	var v T
	if err := jsonDecode(r, &v); err != nil {
		return nil, fmt.Errorf("together: %s: decoding response: %w", op, err)
	}
	return &v, nil
}
