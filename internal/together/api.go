package together

import (
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"strings"
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
func (c *Client) ListFineTunes(ctx context.Context) ([]FineTune, error) {
	var l dataList[FineTune]
	return l.Data, c.do(ctx, get("ListFineTunes", "/fine-tunes"), &l)
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

// GetFineTuneMetrics reads {"metrics":[{name: number}]} and reports the
// last train_loss and eval_loss found, if any.
func (c *Client) GetFineTuneMetrics(ctx context.Context, id string) (*FineTuneMetrics, error) {
	var body struct {
		Metrics []map[string]any `json:"metrics"`
	}
	if err := c.do(ctx, get("GetFineTuneMetrics", pathID("/fine-tunes", id)+"/metrics"), &body); err != nil {
		return nil, err
	}
	m := &FineTuneMetrics{Raw: body.Metrics}
	for _, row := range body.Metrics {
		if v, ok := row["train_loss"].(float64); ok {
			m.TrainLoss = &v
		}
		if v, ok := row["eval_loss"].(float64); ok {
			m.EvalLoss = &v
		}
	}
	return m, nil
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

// ListBatches lists every batch; this route answers a bare array.
func (c *Client) ListBatches(ctx context.Context) ([]Batch, error) {
	var l []Batch
	return l, c.do(ctx, get("ListBatches", "/batches"), &l)
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

// ListFiles lists every file of the account.
func (c *Client) ListFiles(ctx context.Context) ([]File, error) {
	var l dataList[File]
	return l.Data, c.do(ctx, get("ListFiles", "/files"), &l)
}

// DownloadFile streams a file's content; the caller must close it. Only the
// request is retried: once the body starts flowing, the caller owns it.
func (c *Client) DownloadFile(ctx context.Context, id string) (rc io.ReadCloser, err error) {
	const op = "DownloadFile"
	defer func() { c.counts.WithLabelValues(op, outcome(err)).Inc() }()
	resp, err := c.send(ctx, get(op, pathID("/files", id)+"/content"))
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
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
	var l []Model
	return l, c.do(ctx, get("ListModels", "/models"), &l)
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
