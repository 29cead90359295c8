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

// Dedicated Model Inference (DMI), the v2 dedicated-endpoint API. Since
// 2026 POST /v1/endpoints answers 403 endpoints_v1_create_access_disabled
// (DOCS dedicated-endpoints/migrate-from-v1; SK together-dedicated-model-
// inference SKILL.md @644d382); new endpoints are created under
// https://api.together.ai/v2/projects/{projectId}/… with camelCase JSON.
//
// Shapes, field by field, from:
//   GO  togethercomputer/together-go @862b8ae56b07: betaendpoint.go,
//       betaendpointdeployment.go, betamodelconfig.go, together.go (whoami),
//       packages/pagination/pagination.go (CursorPagination);
//   TS  togethercomputer/together-typescript @5d7f323d5a9d:
//       src/resources/beta/endpoints/endpoints.ts, deployments.ts,
//       src/core/pagination.ts — the later source where the two differ
//       (TS marks EndpointDeploymentSummary.hardware optional and
//       estimatedEffectiveTrafficShare required, and knows
//       ENDPOINT_TYPE_RESERVED).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultCallTimeout bounds a v2 call whose context carries no deadline of
// its own, so that one hung response cannot wedge a reconciler.
const DefaultCallTimeout = 30 * time.Second

// CodeV1EndpointCreateDisabled is the error code of the 403 that
// POST /v1/endpoints answers now that v1 endpoint creation is retired.
const CodeV1EndpointCreateDisabled = "endpoints_v1_create_access_disabled"

// IsV1EndpointCreateDisabled reports the 403 of a retired v1 endpoint create.
func IsV1EndpointCreateDisabled(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.StatusCode == http.StatusForbidden && e.Code == CodeV1EndpointCreateDisabled
}

// IsForbidden reports a 403: the key's project may not do this.
func IsForbidden(err error) bool { return statusOf(err) == http.StatusForbidden }

// IsConflict reports a 409, e.g. a name already taken or a stale etag.
func IsConflict(err error) bool { return statusOf(err) == http.StatusConflict }

// Whoami is GET /v1/whoami (GO together.go WhoamiResponse): the project an
// API key is scoped to. Every v2 management call needs ProjectID, and an
// endpoint's inference name is <ProjectSlug>/<endpoint name>.
type Whoami struct {
	APIKeyID         string `json:"api_key_id"`
	OrganizationID   string `json:"organization_id"`
	OrganizationName string `json:"organization_name"`
	ProjectID        string `json:"project_id"`
	ProjectName      string `json:"project_name"`
	ProjectSlug      string `json:"project_slug"`
	UserID           string `json:"user_id,omitempty"`
}

// Deployment states (GO betaendpoint.go DeploymentStatusState).
const (
	DeploymentProvisioning = "DEPLOYMENT_STATE_PROVISIONING"
	DeploymentReady        = "DEPLOYMENT_STATE_READY"
	DeploymentScaling      = "DEPLOYMENT_STATE_SCALING"
	DeploymentDegraded     = "DEPLOYMENT_STATE_DEGRADED"
	DeploymentFailed       = "DEPLOYMENT_STATE_FAILED"
	DeploymentStopped      = "DEPLOYMENT_STATE_STOPPED"
	DeploymentStopping     = "DEPLOYMENT_STATE_STOPPING"
)

// Endpoint visibilities and types (GO betaendpoint.go; TS endpoints.ts).
const (
	VisibilityPrivate       = "VISIBILITY_PRIVATE"
	VisibilityInternal      = "VISIBILITY_INTERNAL"
	EndpointTypeV2Dedicated = "ENDPOINT_TYPE_DEDICATED"
)

// V2Endpoint is a stable inference entry point grouping deployments (GO
// betaendpoint.go Endpoint; TS endpoints.ts Endpoint). Name is
// project-qualified, <project_slug>/<endpoint_name>: the model value
// clients send to https://api-inference.together.ai/v1.
type V2Endpoint struct {
	ID              string                `json:"id"`
	CreatedAt       time.Time             `json:"createdAt"`
	Deployments     []V2DeploymentSummary `json:"deployments"`
	EndpointType    string                `json:"endpointType"`
	Etag            string                `json:"etag"`
	Name            string                `json:"name"`
	ProjectID       string                `json:"projectId"`
	TrafficSplit    []TrafficSplitEntry   `json:"trafficSplit"`
	UpdatedAt       time.Time             `json:"updatedAt"`
	Visibility      string                `json:"visibility"`
	ActiveRolloutID string                `json:"activeRolloutId,omitempty"`
}

// BareName is the endpoint name without its project slug.
func (e *V2Endpoint) BareName() string {
	if i := strings.LastIndex(e.Name, "/"); i >= 0 {
		return e.Name[i+1:]
	}
	return e.Name
}

// Weight returns the deployment's traffic-split weight and whether it has an
// entry at all.
func (e *V2Endpoint) Weight(deploymentID string) (float64, bool) {
	for _, t := range e.TrafficSplit {
		if t.DeploymentID == deploymentID {
			return t.Weight, true
		}
	}
	return 0, false
}

// V2DeploymentSummary is the compact deployment embedded in an endpoint
// (GO betaendpoint.go EndpointDeploymentSummary; TS EndpointDeploymentSummary).
type V2DeploymentSummary struct {
	ID                             string        `json:"id"`
	Autoscaling                    V2Autoscaling `json:"autoscaling"`
	CreatedAt                      time.Time     `json:"createdAt"`
	EstimatedEffectiveTrafficShare float64       `json:"estimatedEffectiveTrafficShare"`
	Hardware                       string        `json:"hardware,omitempty"`
	Model                          string        `json:"model"`
	ModelID                        string        `json:"modelId"`
	Name                           string        `json:"name"`
	State                          string        `json:"state"`
	TrafficMode                    string        `json:"trafficMode"`
	DesiredReplicas                int64         `json:"desiredReplicas,omitempty"`
	ReadyReplicas                  int64         `json:"readyReplicas,omitempty"`
}

// TrafficSplitEntry is one deployment's capacity weight in an endpoint's
// live traffic split (GO EndpointTrafficSplitEntry): its share is
// weight × ready replicas; a deployment not in the split gets no traffic.
type TrafficSplitEntry struct {
	DeploymentID string  `json:"deploymentId"`
	Weight       float64 `json:"weight"`
}

// V2Autoscaling is a deployment's replica bounds (GO DeploymentAutoscaling).
// minReplicas 0 with a positive maxReplicas is rejected; 0/0 stops the
// deployment (SK api-reference.md, Autoscaling).
type V2Autoscaling struct {
	MaxReplicas       int64           `json:"maxReplicas"`
	MinReplicas       int64           `json:"minReplicas"`
	ScaleDownWindow   string          `json:"scaleDownWindow,omitempty"`
	ScaleToZeroWindow string          `json:"scaleToZeroWindow,omitempty"`
	ScaleUpWindow     string          `json:"scaleUpWindow,omitempty"`
	ScalingMetrics    []ScalingMetric `json:"scalingMetrics,omitempty"`
}

// ScalingMetric is one autoscaling metric and target
// (GO DeploymentAutoscalingScalingMetric).
type ScalingMetric struct {
	Name       string  `json:"name"`
	Target     float64 `json:"target"`
	Type       string  `json:"type"`
	Percentile string  `json:"percentile,omitempty"`
}

// V2DeploymentStatus is a deployment's state (GO DeploymentStatus).
type V2DeploymentStatus struct {
	Message           string `json:"message"`
	State             string `json:"state"`
	ReadyReplicas     int64  `json:"readyReplicas,omitempty"`
	ScheduledReplicas int64  `json:"scheduledReplicas,omitempty"`
}

// V2Deployment binds a model and an immutable config revision to an
// endpoint (GO betaendpoint.go EndpointDeployment; TS EndpointDeployment).
// Name is <project_slug>/<endpoint_name>/<deployment_name>.
type V2Deployment struct {
	ID                             string             `json:"id"`
	Autoscaling                    V2Autoscaling      `json:"autoscaling"`
	Config                         string             `json:"config"`
	ConfigID                       string             `json:"configId"`
	CreatedAt                      time.Time          `json:"createdAt"`
	EndpointID                     string             `json:"endpointId"`
	Etag                           string             `json:"etag"`
	Hardware                       string             `json:"hardware"`
	Model                          string             `json:"model"`
	ModelID                        string             `json:"modelId"`
	ModelRevisionID                string             `json:"modelRevisionId"`
	Name                           string             `json:"name"`
	ProjectID                      string             `json:"projectId"`
	Status                         V2DeploymentStatus `json:"status"`
	TrafficMode                    string             `json:"trafficMode"`
	UpdatedAt                      time.Time          `json:"updatedAt"`
	DesiredReplicas                int64              `json:"desiredReplicas,omitempty"`
	EnableLora                     bool               `json:"enableLora,omitempty"`
	EstimatedEffectiveTrafficShare float64            `json:"estimatedEffectiveTrafficShare,omitempty"`
	// Placement is a union ({"inline":{…}} or {"profile":"…"}) the operator
	// does not read.
	Placement            *V2Placement   `json:"placement,omitempty"`
	RuntimeInfo          *V2RuntimeInfo `json:"runtimeInfo,omitempty"`
	Speculator           string         `json:"speculator,omitempty"`
	SpeculatorID         string         `json:"speculatorId,omitempty"`
	SpeculatorRevisionID string         `json:"speculatorRevisionId,omitempty"`
}

// BareName is the deployment name without project and endpoint.
func (d *V2Deployment) BareName() string {
	if i := strings.LastIndex(d.Name, "/"); i >= 0 {
		return d.Name[i+1:]
	}
	return d.Name
}

// V2Placement is either variant of the placement union
// (GO EndpointDeploymentPlacementUnion).
type V2Placement struct {
	Inline  *V2PlacementConfig `json:"inline,omitempty"`
	Profile string             `json:"profile,omitempty"`
}

// V2PlacementConfig is inline placement (GO DeploymentPlacementConfig).
type V2PlacementConfig struct {
	Constraint string   `json:"constraint,omitempty"`
	Regions    []string `json:"regions,omitempty"`
}

// V2RuntimeInfo is derived from a deployment's config
// (GO EndpointDeploymentRuntimeInfo).
type V2RuntimeInfo struct {
	EngineType                string `json:"engineType,omitempty"`
	EngineVersion             string `json:"engineVersion,omitempty"`
	FunctionCallingSupported  bool   `json:"functionCallingSupported,omitempty"`
	StructuredOutputSupported bool   `json:"structuredOutputSupported,omitempty"`
}

// V2Config is an immutable config revision: how a compatible model runs,
// engine and hardware (GO betamodelconfig.go Config). Its selectors carry
// accelerator_type, accelerator_count, optimization and topology (SK
// models-and-configs.md, Configs).
type V2Config struct {
	ID               string                `json:"id"`
	Certifications   []V2ConfigCertificate `json:"certifications"`
	ProjectID        string                `json:"projectId"`
	ReferenceModel   string                `json:"referenceModel"`
	ReferenceModelID string                `json:"referenceModelId"`
	Selectors        []V2ConfigSelector    `json:"selectors"`
	DraftModel       string                `json:"draftModel,omitempty"`
}

// ResourceName is projects/{owning project}/configs/{id}, the form a
// deployment create takes; the owning project is often a platform project,
// not the caller's.
func (c *V2Config) ResourceName() string {
	return "projects/" + c.ProjectID + "/configs/" + c.ID
}

// Selector returns the value of one selector key, or "".
func (c *V2Config) Selector(key string) string {
	for _, s := range c.Selectors {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// Config selector keys (SK models-and-configs.md).
const (
	SelectorAcceleratorType  = "accelerator_type"
	SelectorAcceleratorCount = "accelerator_count"
	SelectorOptimization     = "optimization"
)

// V2ConfigCertificate is one certification of a config
// (GO ConfigCertification).
type V2ConfigCertificate struct {
	CertificationType    string    `json:"certificationType"`
	CertifiedAt          time.Time `json:"certifiedAt"`
	CertifiedBy          string    `json:"certifiedBy"`
	Model                string    `json:"model"`
	ModelRevisionID      string    `json:"modelRevisionId"`
	Target               string    `json:"target"`
	DraftModel           string    `json:"draftModel,omitempty"`
	DraftModelRevisionID string    `json:"draftModelRevisionId,omitempty"`
	Notes                string    `json:"notes,omitempty"`
}

// V2ConfigSelector is one hardware or runtime requirement (GO ConfigSelector).
type V2ConfigSelector struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// cursorPage is the v2 list envelope (GO packages/pagination CursorPagination;
// TS src/core/pagination.ts): items camelCase, the cursor snake_case.
type cursorPage[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor"`
}

// CreateV2EndpointRequest is the body of POST …/endpoints
// (GO BetaEndpointNewParams). Name is the bare endpoint name.
type CreateV2EndpointRequest struct {
	Name       string `json:"name"`
	Visibility string `json:"visibility,omitempty"`
}

// CreateV2DeploymentRequest is the body of POST …/endpoints/{ep}/deployments
// (GO BetaEndpointDeploymentNewParams). Model is
// projects/{p}/models/{ml}[/revisions/{rv}], Config
// projects/{p}/configs/{cr}.
type CreateV2DeploymentRequest struct {
	Name        string        `json:"name"`
	Model       string        `json:"model"`
	Config      string        `json:"config"`
	Autoscaling V2Autoscaling `json:"autoscaling"`
	EnableLora  bool          `json:"enableLora,omitempty"`
}

// v2URL maps a path onto the v2 API beside the configured v1 base: the SDKs
// use https://api.together.ai/v2/ next to https://api.together.ai/v1/, so a
// base ending in /v1 has that segment replaced and any other base gets /v2
// appended to its path.
func (c *Client) v2URL(p string) string {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/")
	if strings.HasSuffix(u.Path, "/v1") {
		u.Path = strings.TrimSuffix(u.Path, "/v1")
	}
	u.RawPath = ""
	return u.String() + "/v2" + p
}

// bounded gives ctx DefaultCallTimeout unless it already has a deadline.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultCallTimeout)
}

func projectPath(projectID string, parts ...string) string {
	var b strings.Builder
	b.WriteString("/projects/")
	b.WriteString(url.PathEscape(projectID))
	for _, p := range parts {
		b.WriteString("/")
		b.WriteString(url.PathEscape(p))
	}
	return b.String()
}

// Whoami reads GET /v1/whoami: the API key's project.
func (c *Client) Whoami(ctx context.Context) (*Whoami, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	var w Whoami
	return &w, c.do(ctx, get("Whoami", "/whoami"), &w)
}

// CreateV2Endpoint creates an endpoint. Like every create it is not retried
// once the server may have acted; names are unique within a project, so a
// caller that chose the name finds the endpoint with FindV2EndpointByName
// after an ambiguous failure.
func (c *Client) CreateV2Endpoint(ctx context.Context, projectID string, req CreateV2EndpointRequest) (*V2Endpoint, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	var e V2Endpoint
	k := call{op: "CreateV2Endpoint", method: http.MethodPost, path: projectPath(projectID, "endpoints"), body: req, v2: true}
	return &e, c.do(ctx, k, &e)
}

// GetV2Endpoint reads one endpoint with summaries of its deployments.
func (c *Client) GetV2Endpoint(ctx context.Context, projectID, id string) (*V2Endpoint, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	var e V2Endpoint
	k := get("GetV2Endpoint", projectPath(projectID, "endpoints", id))
	k.v2 = true
	return &e, c.do(ctx, k, &e)
}

// maxPages bounds a cursor walk, so a server that keeps answering cursors
// cannot hold a caller forever.
const maxPages = 50

// FindV2EndpointByName returns the project's endpoint whose bare name is
// name, or nil. The list's filter narrows the answer (GO
// BetaEndpointListParams.Filter: `name` compares a bare or qualified name);
// the name is checked again here, so a server that ignores the filter
// still gives the right result.
func (c *Client) FindV2EndpointByName(ctx context.Context, projectID, name string) (*V2Endpoint, error) {
	q := url.Values{}
	q.Set("filter", fmt.Sprintf("name = %q", name))
	var found *V2Endpoint
	err := walkPages(ctx, c, "ListV2Endpoints", projectPath(projectID, "endpoints"), q, func(e *V2Endpoint) bool {
		if e.BareName() == name {
			found = e
			return false
		}
		return true
	})
	return found, err
}

// ListV2Deployments lists an endpoint's deployments, all pages.
func (c *Client) ListV2Deployments(ctx context.Context, projectID, endpointID string) ([]V2Deployment, error) {
	var out []V2Deployment
	err := walkPages(ctx, c, "ListV2Deployments", projectPath(projectID, "endpoints", endpointID, "deployments"), url.Values{}, func(d *V2Deployment) bool {
		out = append(out, *d)
		return true
	})
	return out, err
}

// ListV2Configs lists the config revisions compatible with a model resource
// (projects/{p}/models/{ml}, no revision), all pages.
func (c *Client) ListV2Configs(ctx context.Context, projectID, referenceModel string) ([]V2Config, error) {
	q := url.Values{}
	q.Set("referenceModel", referenceModel)
	var out []V2Config
	err := walkPages(ctx, c, "ListV2Configs", projectPath(projectID, "configs"), q, func(cfg *V2Config) bool {
		out = append(out, *cfg)
		return true
	})
	return out, err
}

// walkPages follows next_cursor (sent back as `after`) until each returns
// false, a page is empty, or there is no cursor.
func walkPages[T any](ctx context.Context, c *Client, op, p string, q url.Values, each func(*T) bool) error {
	for range maxPages {
		var page cursorPage[T]
		path := p
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		k := get(op, path)
		k.v2 = true
		pctx, cancel := bounded(ctx)
		err := c.do(pctx, k, &page)
		cancel()
		if err != nil {
			return err
		}
		for i := range page.Data {
			if !each(&page.Data[i]) {
				return nil
			}
		}
		if len(page.Data) == 0 || page.NextCursor == "" {
			return nil
		}
		q.Set("after", page.NextCursor)
	}
	return fmt.Errorf("together: %s: more than %d pages", op, maxPages)
}

// SetV2TrafficSplit replaces an endpoint's live traffic split
// (PATCH …/endpoints/{id}?updateMask=trafficSplit with the etag read last,
// so a concurrent change answers 409 instead of being overwritten). An
// empty split is sent as [] (GO BetaEndpointUpdateParams: "Use an empty
// list to stop routing live traffic"). Retried: it sets an absolute value.
func (c *Client) SetV2TrafficSplit(ctx context.Context, projectID, id, etag string, split []TrafficSplitEntry) (*V2Endpoint, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	if split == nil {
		split = []TrafficSplitEntry{}
	}
	body := struct {
		Etag         string              `json:"etag,omitempty"`
		TrafficSplit []TrafficSplitEntry `json:"trafficSplit"`
	}{etag, split}
	var e V2Endpoint
	k := call{op: "SetV2TrafficSplit", method: http.MethodPatch, path: projectPath(projectID, "endpoints", id) + "?updateMask=trafficSplit",
		body: body, idempotent: true, v2: true}
	return &e, c.do(ctx, k, &e)
}

// DeleteV2Endpoint deletes an endpoint; its deployments must be deleted
// first (GO BetaEndpointService.Delete).
func (c *Client) DeleteV2Endpoint(ctx context.Context, projectID, id string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	k := call{op: "DeleteV2Endpoint", method: http.MethodDelete, path: projectPath(projectID, "endpoints", id), idempotent: true, v2: true}
	return c.do(ctx, k, nil)
}

// CreateV2Deployment creates a deployment under an endpoint; not retried
// once the server may have acted. Its name is unique within the endpoint,
// so ListV2Deployments finds it after an ambiguous failure.
func (c *Client) CreateV2Deployment(ctx context.Context, projectID, endpointID string, req CreateV2DeploymentRequest) (*V2Deployment, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	var d V2Deployment
	k := call{op: "CreateV2Deployment", method: http.MethodPost, path: projectPath(projectID, "endpoints", endpointID, "deployments"), body: req, v2: true}
	return &d, c.do(ctx, k, &d)
}

// GetV2Deployment reads one deployment and its status.
func (c *Client) GetV2Deployment(ctx context.Context, projectID, endpointID, id string) (*V2Deployment, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	var d V2Deployment
	k := get("GetV2Deployment", projectPath(projectID, "endpoints", endpointID, "deployments", id))
	k.v2 = true
	return &d, c.do(ctx, k, &d)
}

// ScaleV2Deployment sets a deployment's replica bounds
// (PATCH …?updateMask=autoscaling); 0/0 stops it, which a delete requires.
// Retried: it sets absolute values.
func (c *Client) ScaleV2Deployment(ctx context.Context, projectID, endpointID, id string, minReplicas, maxReplicas int64) (*V2Deployment, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	body := struct {
		Autoscaling struct {
			MaxReplicas int64 `json:"maxReplicas"`
			MinReplicas int64 `json:"minReplicas"`
		} `json:"autoscaling"`
	}{}
	body.Autoscaling.MinReplicas, body.Autoscaling.MaxReplicas = minReplicas, maxReplicas
	var d V2Deployment
	k := call{op: "ScaleV2Deployment", method: http.MethodPatch,
		path: projectPath(projectID, "endpoints", endpointID, "deployments", id) + "?updateMask=autoscaling",
		body: body, idempotent: true, v2: true}
	return &d, c.do(ctx, k, &d)
}

// DeleteV2Deployment deletes a deployment, which must be stopped and out of
// the traffic split (GO BetaEndpointDeploymentService.Delete; SK
// api-reference.md, Delete Resources).
func (c *Client) DeleteV2Deployment(ctx context.Context, projectID, endpointID, id string) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	k := call{op: "DeleteV2Deployment", method: http.MethodDelete, path: projectPath(projectID, "endpoints", endpointID, "deployments", id), idempotent: true, v2: true}
	return c.do(ctx, k, nil)
}

// ModelResource is projects/{projectID}/models/{modelID}, with
// /revisions/{revisionID} when revisionID is set: how v2 names a model.
func ModelResource(projectID, modelID, revisionID string) string {
	s := "projects/" + projectID + "/models/" + modelID
	if revisionID != "" {
		s += "/revisions/" + revisionID
	}
	return s
}
