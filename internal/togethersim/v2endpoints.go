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

// The v2 Dedicated Model Inference API and the retired v1 endpoint create.
//
// This file does not import the client (internal/together): its wire JSON
// is written here, field by field, from Together's published sources, so
// that a client that misreads them is caught by the strict decode tests
// instead of being confirmed by a simulator that shares its types.
//
//   GO  togethercomputer/together-go @862b8ae56b07: together.go
//       (WhoamiResponse), betaendpoint.go (Endpoint, EndpointDeploymentSummary,
//       EndpointTrafficSplitEntry, DeploymentAutoscaling, DeploymentStatus,
//       EndpointDeployment, BetaEndpointUpdateParams), betaendpointdeployment.go
//       (BetaEndpointDeploymentNewParams), betamodelconfig.go (Config),
//       packages/pagination/pagination.go (CursorPagination).
//   TS  togethercomputer/together-typescript @5d7f323d5a9d:
//       src/resources/beta/endpoints/endpoints.ts, deployments.ts.
//   SK  togethercomputer/skills @644d38225bbd:
//       skills/together-dedicated-model-inference/references/api-reference.md
//       (deployment states, autoscaling rules, delete order, filters) and
//       models-and-configs.md (config selectors; a fine-tune deploys by its
//       model_object_id).
//
// What no source states and the simulator chooses (unconfirmed): the error
// body of v2 routes (the v1 ErrorData shape is sent), the status codes of a
// duplicate name (409), of deleting a running deployment or an endpoint
// that still has deployments (400), the endpoint name pattern, and the
// message of the v1 403.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Simulated project of the API key (GET /v1/whoami).
const (
	SimProjectID       = "proj_sim0001"
	SimProjectSlug     = "sim-project"
	simPlatformProject = "proj_platform"
)

// codeV1CreateDisabled is the code of the retired v1 endpoint create (DOCS
// dedicated-endpoints/migrate-from-v1; SK SKILL.md).
const codeV1CreateDisabled = "endpoints_v1_create_access_disabled"

// wireWhoami is GO together.go WhoamiResponse.
type wireWhoami struct {
	APIKeyID         string `json:"api_key_id"`
	OrganizationID   string `json:"organization_id"`
	OrganizationName string `json:"organization_name"`
	ProjectID        string `json:"project_id"`
	ProjectName      string `json:"project_name"`
	ProjectSlug      string `json:"project_slug"`
	UserID           string `json:"user_id"`
}

// wireAutoscaling is GO DeploymentAutoscaling (TS: every field optional).
type wireAutoscaling struct {
	MaxReplicas int64 `json:"maxReplicas"`
	MinReplicas int64 `json:"minReplicas"`
}

// wireSplitEntry is GO EndpointTrafficSplitEntry.
type wireSplitEntry struct {
	DeploymentID string  `json:"deploymentId"`
	Weight       float64 `json:"weight"`
}

// wireDeploymentSummary is TS EndpointDeploymentSummary (hardware optional,
// estimatedEffectiveTrafficShare required there).
type wireDeploymentSummary struct {
	ID                             string          `json:"id"`
	Autoscaling                    wireAutoscaling `json:"autoscaling"`
	CreatedAt                      time.Time       `json:"createdAt"`
	EstimatedEffectiveTrafficShare float64         `json:"estimatedEffectiveTrafficShare"`
	Hardware                       string          `json:"hardware"`
	Model                          string          `json:"model"`
	ModelID                        string          `json:"modelId"`
	Name                           string          `json:"name"`
	State                          string          `json:"state"`
	TrafficMode                    string          `json:"trafficMode"`
	DesiredReplicas                int64           `json:"desiredReplicas"`
	ReadyReplicas                  int64           `json:"readyReplicas"`
}

// wireEndpoint is GO/TS Endpoint; every field but activeRolloutId is
// required there.
type wireEndpoint struct {
	ID           string                  `json:"id"`
	CreatedAt    time.Time               `json:"createdAt"`
	Deployments  []wireDeploymentSummary `json:"deployments"`
	EndpointType string                  `json:"endpointType"`
	Etag         string                  `json:"etag"`
	Name         string                  `json:"name"`
	ProjectID    string                  `json:"projectId"`
	TrafficSplit []wireSplitEntry        `json:"trafficSplit"`
	UpdatedAt    time.Time               `json:"updatedAt"`
	Visibility   string                  `json:"visibility"`
}

// wireDeploymentStatus is GO DeploymentStatus.
type wireDeploymentStatus struct {
	Message           string `json:"message"`
	State             string `json:"state"`
	ReadyReplicas     int64  `json:"readyReplicas"`
	ScheduledReplicas int64  `json:"scheduledReplicas"`
}

// wireDeployment is GO/TS EndpointDeployment: its required fields and the
// optional ones the simulator knows.
type wireDeployment struct {
	ID                             string               `json:"id"`
	Autoscaling                    wireAutoscaling      `json:"autoscaling"`
	Config                         string               `json:"config"`
	ConfigID                       string               `json:"configId"`
	CreatedAt                      time.Time            `json:"createdAt"`
	EndpointID                     string               `json:"endpointId"`
	Etag                           string               `json:"etag"`
	Hardware                       string               `json:"hardware"`
	Model                          string               `json:"model"`
	ModelID                        string               `json:"modelId"`
	ModelRevisionID                string               `json:"modelRevisionId"`
	Name                           string               `json:"name"`
	ProjectID                      string               `json:"projectId"`
	Status                         wireDeploymentStatus `json:"status"`
	TrafficMode                    string               `json:"trafficMode"`
	UpdatedAt                      time.Time            `json:"updatedAt"`
	DesiredReplicas                int64                `json:"desiredReplicas"`
	EnableLora                     bool                 `json:"enableLora"`
	EstimatedEffectiveTrafficShare float64              `json:"estimatedEffectiveTrafficShare"`
}

// wireSelector and wireConfig are GO betamodelconfig.go ConfigSelector and
// Config (certifications are sent empty: the simulator certifies nothing).
type wireSelector struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type wireConfig struct {
	ID               string         `json:"id"`
	Certifications   []any          `json:"certifications"`
	ProjectID        string         `json:"projectId"`
	ReferenceModel   string         `json:"referenceModel"`
	ReferenceModelID string         `json:"referenceModelId"`
	Selectors        []wireSelector `json:"selectors"`
}

// wirePage is GO/TS CursorPagination: {"data": [...], "next_cursor": "..."}.
type wirePage struct {
	Data       any    `json:"data"`
	NextCursor string `json:"next_cursor"`
}

// Deployment states (GO DeploymentStatusState).
const (
	depProvisioning = "DEPLOYMENT_STATE_PROVISIONING"
	depScaling      = "DEPLOYMENT_STATE_SCALING"
	depReady        = "DEPLOYMENT_STATE_READY"
	depFailed       = "DEPLOYMENT_STATE_FAILED"
	depStopping     = "DEPLOYMENT_STATE_STOPPING"
	depStopped      = "DEPLOYMENT_STATE_STOPPED"
)

type v2Model struct {
	id, revision string
}

type v2Endpoint struct {
	id, name, visibility string
	created, updated     time.Time
	version              int
	split                []wireSplitEntry
	deployments          []string // ids, in creation order
}

type v2Deployment struct {
	id, endpointID, name             string
	model, modelID, revision, config string
	configID, hardware               string
	min, max                         int64
	state, message                   string
	ready                            int64
	failAtReady                      string
	created, updated                 time.Time
	version                          int
}

// v2Refusal answers the next creates of an endpoint with an error.
type v2Refusal struct {
	status      int
	code, msg   string
	times, used int
}

type v2State struct {
	models      map[string]*v2Model
	configs     []*wireConfig
	endpoints   map[string]*v2Endpoint
	deployments map[string]*v2Deployment
	refuse      *v2Refusal
	failNext    string
}

func newV2State() *v2State {
	return &v2State{models: map[string]*v2Model{}, endpoints: map[string]*v2Endpoint{}, deployments: map[string]*v2Deployment{}}
}

func (s *Server) v2Routes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/whoami", s.whoami)
	m.HandleFunc("POST /v1/endpoints", s.v1CreateRetired)
	const p = "/v2/projects/{project}"
	m.HandleFunc("GET "+p+"/endpoints", s.v2ListEndpoints)
	m.HandleFunc("POST "+p+"/endpoints", s.v2CreateEndpoint)
	m.HandleFunc("GET "+p+"/endpoints/{ep}", s.v2GetEndpoint)
	m.HandleFunc("PATCH "+p+"/endpoints/{ep}", s.v2UpdateEndpoint)
	m.HandleFunc("DELETE "+p+"/endpoints/{ep}", s.v2DeleteEndpoint)
	m.HandleFunc("GET "+p+"/endpoints/{ep}/deployments", s.v2ListDeployments)
	m.HandleFunc("POST "+p+"/endpoints/{ep}/deployments", s.v2CreateDeployment)
	m.HandleFunc("GET "+p+"/endpoints/{ep}/deployments/{dep}", s.v2GetDeployment)
	m.HandleFunc("PATCH "+p+"/endpoints/{ep}/deployments/{dep}", s.v2UpdateDeployment)
	m.HandleFunc("DELETE "+p+"/endpoints/{ep}/deployments/{dep}", s.v2DeleteDeployment)
	m.HandleFunc("GET "+p+"/configs", s.v2ListConfigs)
}

func (s *Server) whoami(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, wireWhoami{
		APIKeyID: "key_sim0001", OrganizationID: "org_sim0001", OrganizationName: "Simulated org",
		ProjectID: SimProjectID, ProjectName: "Simulated project", ProjectSlug: SimProjectSlug, UserID: simUser,
	})
}

// v1CreateRetired answers POST /v1/endpoints as Together does since v1
// creation was retired: 403 with code endpoints_v1_create_access_disabled.
func (s *Server) v1CreateRetired(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusForbidden, codeV1CreateDisabled,
		"Creating dedicated endpoints with the v1 API is no longer available; use the v2 Dedicated Model Inference API.")
}

// RegisterFineTunedModel puts a completed fine-tune's weights in the model
// registry, as Together does (a completed fine-tune is a private model of
// the project: SK models-and-configs.md), with config revisions for it, and
// returns the ids the job reports as model_object_id / _revision_id and,
// for LoRA jobs, adapter_object_id / _revision_id. Callers hold s.mu.
func (s *Server) registerFineTunedModel(jobID string, lora bool) (model, modelRev, adapter, adapterRev string) {
	h := func(p string) string { sum := sha256.Sum256([]byte(p + jobID)); return hex.EncodeToString(sum[:6]) }
	model, modelRev = "ml_"+h("model:"), "rv_"+h("model-rev:")
	s.v2.models[model] = &v2Model{id: model, revision: modelRev}
	ref := "projects/" + SimProjectID + "/models/" + model
	for i, sel := range [][3]string{
		{"nvidia-h100-80gb", "1", "balanced"},
		{"nvidia-h100-80gb", "2", "throughput"},
		{"nvidia-a100-80gb", "1", "balanced"},
	} {
		s.v2.configs = append(s.v2.configs, &wireConfig{
			ID: fmt.Sprintf("cr_%s%d", h("config:"), i), Certifications: []any{}, ProjectID: simPlatformProject,
			ReferenceModel: ref, ReferenceModelID: model,
			Selectors: []wireSelector{{"accelerator_type", sel[0]}, {"accelerator_count", sel[1]}, {"optimization", sel[2]}, {"topology", "aggregated"}},
		})
	}
	if lora {
		adapter, adapterRev = "ml_"+h("adapter:"), "rv_"+h("adapter-rev:")
		s.v2.models[adapter] = &v2Model{id: adapter, revision: adapterRev}
	}
	return model, modelRev, adapter, adapterRev
}

// RefuseV2EndpointCreate makes the next times endpoint creates (every one
// when times is 0) answer status with code and message, e.g. a 403 for a
// project without access to dedicated endpoints.
func (s *Server) RefuseV2EndpointCreate(status int, code, message string, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v2.refuse = &v2Refusal{status: status, code: code, msg: message, times: times}
}

// FailNextV2Deployment makes the next deployment created end FAILED with
// message instead of READY.
func (s *Server) FailNextV2Deployment(message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v2.failNext = message
}

// V2Endpoints returns the qualified names of the project's endpoints.
func (s *Server) V2Endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range sortedKeys(s.v2.endpoints) {
		out = append(out, SimProjectSlug+"/"+s.v2.endpoints[id].name)
	}
	return out
}

// V2Deployments returns the ids of every deployment of the project.
func (s *Server) V2Deployments() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedKeys(s.v2.deployments)
}

// stepV2 moves every deployment one step; callers hold s.mu. A new
// deployment is PROVISIONING, then SCALING, then READY (or FAILED); a
// stopped one goes STOPPING then STOPPED (SK api-reference.md, Deployment
// States).
func (s *Server) stepV2() {
	for _, id := range sortedKeys(s.v2.deployments) {
		d := s.v2.deployments[id]
		before := d.state
		switch d.state {
		case depProvisioning:
			d.state, d.message = depScaling, "Replicas starting"
		case depScaling:
			if d.failAtReady != "" {
				d.state, d.message = depFailed, d.failAtReady
			} else {
				d.state, d.message, d.ready = depReady, "All replicas ready", d.min
			}
		case depStopping:
			d.state, d.message, d.ready = depStopped, "Stopped", 0
		}
		if d.state != before {
			d.updated, d.version = s.now(), d.version+1
		}
	}
}

func (s *Server) v2Project(w http.ResponseWriter, r *http.Request) bool {
	if p := r.PathValue("project"); p != SimProjectID {
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("project %q not found", p))
		return false
	}
	return true
}

func etag(v int) string { return fmt.Sprintf("W/\"%d\"", v) }

// wire renders an endpoint; callers hold s.mu.
func (s *Server) wireEndpoint(e *v2Endpoint) wireEndpoint {
	out := wireEndpoint{ID: e.id, CreatedAt: e.created, Deployments: []wireDeploymentSummary{},
		EndpointType: "ENDPOINT_TYPE_DEDICATED", Etag: etag(e.version), Name: SimProjectSlug + "/" + e.name,
		ProjectID: SimProjectID, TrafficSplit: append([]wireSplitEntry{}, e.split...), UpdatedAt: e.updated, Visibility: e.visibility}
	for _, id := range e.deployments {
		d := s.v2.deployments[id]
		out.Deployments = append(out.Deployments, wireDeploymentSummary{
			ID: d.id, Autoscaling: wireAutoscaling{MaxReplicas: d.max, MinReplicas: d.min}, CreatedAt: d.created,
			EstimatedEffectiveTrafficShare: s.share(e, d), Hardware: d.hardware, Model: d.model, ModelID: d.modelID,
			Name: SimProjectSlug + "/" + e.name + "/" + d.name, State: d.state, TrafficMode: "TRAFFIC_MODE_LIVE",
			DesiredReplicas: d.min, ReadyReplicas: d.ready,
		})
	}
	return out
}

// share is weight × ready replicas over the endpoint's total (GO
// EndpointTrafficSplitEntry.Weight).
func (s *Server) share(e *v2Endpoint, d *v2Deployment) float64 {
	var mine, total float64
	for _, t := range e.split {
		c := t.Weight * float64(s.v2.deployments[t.DeploymentID].ready)
		total += c
		if t.DeploymentID == d.id {
			mine = c
		}
	}
	if total == 0 {
		return 0
	}
	return mine / total
}

func (s *Server) wireDeployment(d *v2Deployment) wireDeployment {
	e := s.v2.endpoints[d.endpointID]
	return wireDeployment{
		ID: d.id, Autoscaling: wireAutoscaling{MaxReplicas: d.max, MinReplicas: d.min}, Config: d.config, ConfigID: d.configID,
		CreatedAt: d.created, EndpointID: d.endpointID, Etag: etag(d.version), Hardware: d.hardware, Model: d.model,
		ModelID: d.modelID, ModelRevisionID: d.revision, Name: SimProjectSlug + "/" + e.name + "/" + d.name,
		ProjectID: SimProjectID, Status: wireDeploymentStatus{Message: d.message, State: d.state, ReadyReplicas: d.ready, ScheduledReplicas: d.min},
		TrafficMode: "TRAFFIC_MODE_LIVE", UpdatedAt: d.updated, DesiredReplicas: d.min,
		EstimatedEffectiveTrafficShare: s.share(e, d),
	}
}

// nameFilter reads the only filter the simulator understands, name = "x";
// anything else is answered 400 "invalid filter expression", as the real
// API answers syntax it does not accept (SK api-reference.md).
var nameFilterRE = regexp.MustCompile(`^\s*name\s*=\s*"([^"]*)"\s*$`)

func nameFilter(w http.ResponseWriter, r *http.Request) (string, bool) {
	f := r.URL.Query().Get("filter")
	if f == "" {
		return "", true
	}
	m := nameFilterRE.FindStringSubmatch(f)
	if m == nil {
		writeError(w, r, http.StatusBadRequest, "invalid_argument", "invalid filter expression")
		return "", false
	}
	name := m[1]
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	return name, true
}

// page cuts items at the after cursor and limit (default 50, max 500; SK
// api-reference.md, List).
func page[T any](w http.ResponseWriter, r *http.Request, items []T) {
	q := r.URL.Query()
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			writeError(w, r, http.StatusBadRequest, "invalid_argument", "limit must be between 1 and 500")
			return
		}
		limit = n
	}
	start := 0
	if v := q.Get("after"); v != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(v, "cur_"))
		if err != nil || n < 0 || n > len(items) {
			writeError(w, r, http.StatusBadRequest, "invalid_argument", "invalid cursor")
			return
		}
		start = n
	}
	end := min(start+limit, len(items))
	next := ""
	if end < len(items) {
		next = fmt.Sprintf("cur_%d", end)
	}
	writeJSON(w, http.StatusOK, wirePage{Data: items[start:end], NextCursor: next})
}

func (s *Server) v2ListEndpoints(w http.ResponseWriter, r *http.Request) {
	if !s.v2Project(w, r) {
		return
	}
	name, ok := nameFilter(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	items := []wireEndpoint{}
	for _, id := range sortedKeys(s.v2.endpoints) {
		if e := s.v2.endpoints[id]; name == "" || e.name == name {
			items = append(items, s.wireEndpoint(e))
		}
	}
	page(w, r, items)
}

var endpointNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func (s *Server) v2CreateEndpoint(w http.ResponseWriter, r *http.Request) {
	if !s.v2Project(w, r) {
		return
	}
	var req struct {
		Name       string `json:"name"`
		Visibility string `json:"visibility"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rf := s.v2.refuse; rf != nil && (rf.times == 0 || rf.used < rf.times) {
		rf.used++
		writeError(w, r, rf.status, rf.code, rf.msg)
		return
	}
	name := req.Name
	if slug, bare, ok := strings.Cut(name, "/"); ok {
		if slug != SimProjectSlug {
			writeError(w, r, http.StatusBadRequest, "invalid_argument", fmt.Sprintf("project slug %q does not match the project", slug))
			return
		}
		name = bare
	}
	switch {
	case !endpointNameRE.MatchString(name):
		writeError(w, r, http.StatusBadRequest, "invalid_argument", "name must be 1-63 lowercase letters, digits and hyphens")
		return
	case req.Visibility != "" && req.Visibility != "VISIBILITY_PRIVATE" && req.Visibility != "VISIBILITY_INTERNAL":
		writeError(w, r, http.StatusBadRequest, "invalid_argument", "visibility must be VISIBILITY_PRIVATE or VISIBILITY_INTERNAL")
		return
	}
	for _, e := range s.v2.endpoints {
		if e.name == name {
			writeError(w, r, http.StatusConflict, "already_exists", fmt.Sprintf("endpoint %q already exists", name))
			return
		}
	}
	vis := req.Visibility
	if vis == "" {
		vis = "VISIBILITY_PRIVATE"
	}
	now := s.now()
	e := &v2Endpoint{id: s.v2ID("ep_"), name: name, visibility: vis, created: now, updated: now, version: 1, split: []wireSplitEntry{}}
	s.v2.endpoints[e.id] = e
	writeJSON(w, http.StatusOK, s.wireEndpoint(e))
}

// v2ID returns a fresh id with a v2 prefix (ep_, dep_), random like every
// simulator id (see newID) so that restarts cannot repeat one.
func (s *Server) v2ID(prefix string) string {
	return prefix + strings.ReplaceAll(newID(""), "-", "")[:12]
}

func (s *Server) v2LookupEndpoint(w http.ResponseWriter, r *http.Request) *v2Endpoint {
	if !s.v2Project(w, r) {
		return nil
	}
	e, ok := s.v2.endpoints[r.PathValue("ep")]
	if !ok {
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("endpoint %q not found", r.PathValue("ep")))
	}
	return e
}

func (s *Server) v2GetEndpoint(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.v2LookupEndpoint(w, r); e != nil {
		writeJSON(w, http.StatusOK, s.wireEndpoint(e))
	}
}

// v2UpdateEndpoint is PATCH with an optional updateMask query and etag in
// the body (GO BetaEndpointUpdateParams). The simulator changes the traffic
// split and visibility; without a mask it updates the fields present.
func (s *Server) v2UpdateEndpoint(w http.ResponseWriter, r *http.Request) {
	var body map[string]json.RawMessage
	if !decodeBody(w, r, &body) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.v2LookupEndpoint(w, r)
	if e == nil {
		return
	}
	if raw, ok := body["etag"]; ok {
		var tag string
		if json.Unmarshal(raw, &tag) != nil || tag != etag(e.version) {
			writeError(w, r, http.StatusConflict, "aborted", "etag does not match the endpoint's current version")
			return
		}
	}
	fields := map[string]bool{}
	if mask := r.URL.Query().Get("updateMask"); mask != "" {
		for _, f := range strings.Split(mask, ",") {
			fields[strings.TrimSpace(f)] = true
		}
	} else {
		for k := range body {
			if k != "etag" {
				fields[k] = true
			}
		}
	}
	if len(fields) == 0 {
		writeError(w, r, http.StatusBadRequest, "invalid_argument", "no fields to update")
		return
	}
	split, vis := e.split, e.visibility
	for f := range fields {
		switch f {
		case "trafficSplit":
			var in []wireSplitEntry
			if raw, ok := body[f]; ok && json.Unmarshal(raw, &in) != nil {
				writeError(w, r, http.StatusBadRequest, "invalid_argument", "trafficSplit must be a list of {deploymentId, weight}")
				return
			}
			split = []wireSplitEntry{}
			for _, t := range in {
				if d, ok := s.v2.deployments[t.DeploymentID]; !ok || d.endpointID != e.id {
					writeError(w, r, http.StatusBadRequest, "invalid_argument", fmt.Sprintf("deployment %q is not under endpoint %s", t.DeploymentID, e.id))
					return
				}
				if t.Weight < 0 || math.IsInf(t.Weight, 0) || math.IsNaN(t.Weight) {
					writeError(w, r, http.StatusBadRequest, "invalid_argument", "weights must be finite and non-negative")
					return
				}
				if t.Weight > 0 { // weight 0 removes the deployment from the split
					split = append(split, t)
				}
			}
		case "visibility":
			if json.Unmarshal(body[f], &vis) != nil || (vis != "VISIBILITY_PRIVATE" && vis != "VISIBILITY_INTERNAL") {
				writeError(w, r, http.StatusBadRequest, "invalid_argument", "visibility must be VISIBILITY_PRIVATE or VISIBILITY_INTERNAL")
				return
			}
		default:
			writeError(w, r, http.StatusBadRequest, "invalid_argument", fmt.Sprintf("field %q cannot be updated by the simulator", f))
			return
		}
	}
	e.split, e.visibility = split, vis
	e.updated, e.version = s.now(), e.version+1
	writeJSON(w, http.StatusOK, s.wireEndpoint(e))
}

func (s *Server) v2DeleteEndpoint(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.v2LookupEndpoint(w, r)
	if e == nil {
		return
	}
	if len(e.deployments) > 0 {
		writeError(w, r, http.StatusBadRequest, "failed_precondition", fmt.Sprintf("endpoint %s still has %d deployment(s); delete them first", e.id, len(e.deployments)))
		return
	}
	delete(s.v2.endpoints, e.id)
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) v2ListDeployments(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.v2LookupEndpoint(w, r)
	if e == nil {
		return
	}
	items := []wireDeployment{}
	for _, id := range e.deployments {
		items = append(items, s.wireDeployment(s.v2.deployments[id]))
	}
	page(w, r, items)
}

var (
	modelResourceRE  = regexp.MustCompile(`^projects/([^/]+)/models/([^/]+)(?:/revisions/([^/]+))?$`)
	configResourceRE = regexp.MustCompile(`^projects/([^/]+)/configs/([^/]+)$`)
)

// v2CreateDeployment checks what the sources say a create needs: a name
// unique in the endpoint, a model resource in the registry, a config
// revision compatible with it, and autoscaling bounds where min 0 with a
// positive max is rejected and max defaults to min (GO
// BetaEndpointDeploymentNewParams, DeploymentAutoscaling; SK Autoscaling).
func (s *Server) v2CreateDeployment(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name        string           `json:"name"`
		Model       string           `json:"model"`
		Config      string           `json:"config"`
		Autoscaling *wireAutoscaling `json:"autoscaling"`
		EnableLora  bool             `json:"enableLora"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.v2LookupEndpoint(w, r)
	if e == nil {
		return
	}
	bad := func(msg string) { writeError(w, r, http.StatusBadRequest, "invalid_argument", msg) }
	if !endpointNameRE.MatchString(req.Name) {
		bad("name must be 1-63 lowercase letters, digits and hyphens")
		return
	}
	for _, id := range e.deployments {
		if s.v2.deployments[id].name == req.Name {
			writeError(w, r, http.StatusConflict, "already_exists", fmt.Sprintf("deployment %q already exists in endpoint %s", req.Name, e.id))
			return
		}
	}
	mm := modelResourceRE.FindStringSubmatch(req.Model)
	if mm == nil {
		bad("model must be projects/{projectId}/models/{modelId}[/revisions/{revisionId}]")
		return
	}
	model, ok := s.v2.models[mm[2]]
	if !ok || mm[1] != SimProjectID {
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("model %q not found", req.Model))
		return
	}
	if mm[3] != "" && mm[3] != model.revision {
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("revision %q of model %s not found", mm[3], model.id))
		return
	}
	cm := configResourceRE.FindStringSubmatch(req.Config)
	if cm == nil {
		bad("config must be projects/{projectId}/configs/{configRevisionId}")
		return
	}
	i := slices.IndexFunc(s.v2.configs, func(c *wireConfig) bool { return c.ID == cm[2] && c.ProjectID == cm[1] })
	if i < 0 {
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("config %q not found", req.Config))
		return
	}
	cfg := s.v2.configs[i]
	if cfg.ReferenceModelID != model.id {
		bad(fmt.Sprintf("config %s is not compatible with model %s", cfg.ID, model.id))
		return
	}
	if req.Autoscaling == nil {
		bad("autoscaling is required")
		return
	}
	as := *req.Autoscaling
	if as.MaxReplicas == 0 {
		as.MaxReplicas = as.MinReplicas
	}
	switch {
	case as.MinReplicas < 0 || as.MaxReplicas < as.MinReplicas:
		bad("autoscaling needs 0 <= minReplicas <= maxReplicas")
		return
	case as.MinReplicas == 0 && as.MaxReplicas > 0:
		bad("minReplicas 0 with a positive maxReplicas is not allowed; use 0/0 to stop")
		return
	}
	var gpu, count string
	for _, sel := range cfg.Selectors {
		switch sel.Key {
		case "accelerator_type":
			gpu = sel.Value
		case "accelerator_count":
			count = sel.Value
		}
	}
	now := s.now()
	d := &v2Deployment{
		id: s.v2ID("dep_"), endpointID: e.id, name: req.Name, model: ModelResourceName(model.id, model.revision),
		modelID: model.id, revision: model.revision, config: req.Config, configID: cfg.ID, hardware: count + "x" + gpu,
		min: as.MinReplicas, max: as.MaxReplicas, state: depProvisioning, message: "Scheduling replicas",
		failAtReady: s.v2.failNext, created: now, updated: now, version: 1,
	}
	s.v2.failNext = ""
	if as.MaxReplicas == 0 {
		d.state, d.message = depStopped, "Stopped"
	}
	s.v2.deployments[d.id] = d
	e.deployments = append(e.deployments, d.id)
	writeJSON(w, http.StatusOK, s.wireDeployment(d))
}

// ModelResourceName is how the simulator names a registry model of its
// project: projects/{project}/models/{id}/revisions/{rev}.
func ModelResourceName(id, revision string) string {
	return "projects/" + SimProjectID + "/models/" + id + "/revisions/" + revision
}

func (s *Server) v2LookupDeployment(w http.ResponseWriter, r *http.Request) (*v2Endpoint, *v2Deployment) {
	e := s.v2LookupEndpoint(w, r)
	if e == nil {
		return nil, nil
	}
	d, ok := s.v2.deployments[r.PathValue("dep")]
	if !ok || d.endpointID != e.id {
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("deployment %q not found in endpoint %s", r.PathValue("dep"), e.id))
		return nil, nil
	}
	return e, d
}

func (s *Server) v2GetDeployment(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, d := s.v2LookupDeployment(w, r); d != nil {
		writeJSON(w, http.StatusOK, s.wireDeployment(d))
	}
}

// v2UpdateDeployment changes autoscaling: 0/0 stops the deployment
// (STOPPING, then STOPPED), positive bounds on a stopped one restart it.
func (s *Server) v2UpdateDeployment(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Etag        string           `json:"etag"`
		Autoscaling *wireAutoscaling `json:"autoscaling"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, d := s.v2LookupDeployment(w, r)
	if d == nil {
		return
	}
	if req.Etag != "" && req.Etag != etag(d.version) {
		writeError(w, r, http.StatusConflict, "aborted", "etag does not match the deployment's current version")
		return
	}
	if req.Autoscaling == nil {
		writeError(w, r, http.StatusBadRequest, "invalid_argument", "no fields to update")
		return
	}
	as := *req.Autoscaling
	if as.MaxReplicas < as.MinReplicas || as.MinReplicas < 0 || (as.MinReplicas == 0 && as.MaxReplicas > 0) {
		writeError(w, r, http.StatusBadRequest, "invalid_argument", "autoscaling needs 1 <= minReplicas <= maxReplicas, or 0/0 to stop")
		return
	}
	d.min, d.max = as.MinReplicas, as.MaxReplicas
	switch {
	case as.MaxReplicas == 0 && d.state != depStopped:
		d.state, d.message = depStopping, "Draining replicas"
	case as.MaxReplicas > 0 && (d.state == depStopped || d.state == depStopping):
		d.state, d.message = depProvisioning, "Scheduling replicas"
	}
	d.updated, d.version = s.now(), d.version+1
	writeJSON(w, http.StatusOK, s.wireDeployment(d))
}

// v2DeleteDeployment needs the deployment stopped and out of the traffic
// split (GO BetaEndpointDeploymentService.Delete; SK Delete Resources).
func (s *Server) v2DeleteDeployment(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, d := s.v2LookupDeployment(w, r)
	if d == nil {
		return
	}
	if d.state != depStopped {
		writeError(w, r, http.StatusBadRequest, "failed_precondition", fmt.Sprintf("deployment %s is %s; scale it to 0/0 and wait for DEPLOYMENT_STATE_STOPPED before deleting", d.id, d.state))
		return
	}
	if slices.ContainsFunc(e.split, func(t wireSplitEntry) bool { return t.DeploymentID == d.id }) {
		writeError(w, r, http.StatusBadRequest, "failed_precondition", fmt.Sprintf("deployment %s is in the traffic split of endpoint %s; remove it first", d.id, e.id))
		return
	}
	delete(s.v2.deployments, d.id)
	e.deployments = slices.DeleteFunc(e.deployments, func(id string) bool { return id == d.id })
	e.updated, e.version = s.now(), e.version+1
	writeJSON(w, http.StatusOK, map[string]any{})
}

// v2ListConfigs lists config revisions compatible with referenceModel
// (projects/{p}/models/{ml}; GO BetaModelConfigListParams), which is required.
func (s *Server) v2ListConfigs(w http.ResponseWriter, r *http.Request) {
	if !s.v2Project(w, r) {
		return
	}
	ref := r.URL.Query().Get("referenceModel")
	if ref == "" {
		writeError(w, r, http.StatusBadRequest, "invalid_argument", "referenceModel is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	items := []wireConfig{}
	for _, c := range s.v2.configs {
		if c.ReferenceModel == ref {
			items = append(items, *c)
		}
	}
	page(w, r, items)
}
