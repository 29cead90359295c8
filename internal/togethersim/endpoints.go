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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/pkg/push"
)

// Endpoint states (GO endpoint.go DedicatedEndpointState) and types.
const (
	epPending    = "PENDING"
	epStarting   = "STARTING"
	epStarted    = "STARTED"
	epStopping   = "STOPPING"
	epStopped    = "STOPPED"
	epDedicated  = "dedicated"
	epServerless = "serverless"
)

type endpoint struct {
	dedicatedEndpoint
	// target is the state the endpoint is moving to (STARTED or STOPPED).
	target string
}

// V1EndpointRequest describes a v1 dedicated endpoint for AddV1Endpoint.
type V1EndpointRequest struct {
	Model, Hardware, DisplayName string
	MinReplicas, MaxReplicas     int64
	// State is "STOPPED" for an endpoint created stopped.
	State string
}

// V1Endpoint is what AddV1Endpoint made.
type V1Endpoint struct {
	ID, Name, Model, State string
}

// AddV1Endpoint preloads a dedicated endpoint made with the v1 API before
// its create was retired (POST /v1/endpoints now answers 403, see
// v2endpoints.go): such endpoints keep serving and can still be read,
// stopped and deleted through v1.
func (s *Server) AddV1Endpoint(req V1EndpointRequest) (V1Endpoint, error) {
	e, err := s.addV1Endpoint(endpointCreateRequest{Model: req.Model, Hardware: req.Hardware, DisplayName: req.DisplayName,
		Autoscaling: autoscaling{MinReplicas: req.MinReplicas, MaxReplicas: req.MaxReplicas}, State: req.State})
	return V1Endpoint{ID: e.ID, Name: e.Name, Model: e.Model, State: e.State}, err
}

func (s *Server) addV1Endpoint(req endpointCreateRequest) (dedicatedEndpoint, error) {
	if msg := validateEndpoint(req); msg != "" {
		return dedicatedEndpoint{}, fmt.Errorf("togethersim: %s", msg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := newID("endpoint-")
	e := &endpoint{dedicatedEndpoint: dedicatedEndpoint{
		ID: id, Object: "endpoint", Name: simUser + "/" + req.Model + "-" + id[len(id)-6:],
		DisplayName: req.DisplayName, Model: req.Model, Hardware: req.Hardware, Type: epDedicated,
		Owner: simUser, State: epPending, Autoscaling: req.Autoscaling, CreatedAt: s.now(),
	}, target: epStarted}
	if req.State == epStopped {
		e.State, e.target = epStopped, epStopped
	}
	s.endpoints[id] = e
	return e.dedicatedEndpoint, nil
}

func validateEndpoint(req endpointCreateRequest) string {
	switch {
	case req.Model == "" || req.Hardware == "":
		return "model and hardware are required"
	case req.Autoscaling.MinReplicas < 0 || req.Autoscaling.MaxReplicas < req.Autoscaling.MinReplicas || req.Autoscaling.MaxReplicas == 0:
		return "autoscaling needs 0 <= min_replicas <= max_replicas and max_replicas >= 1"
	case req.State != "" && req.State != "STARTED" && req.State != "STOPPED":
		return "state must be STARTED or STOPPED"
	}
	return ""
}

// stepEndpoint moves an endpoint toward its target; callers hold s.mu.
func (s *Server) stepEndpoint(e *endpoint) {
	switch {
	case e.target == epStarted && e.State == epPending:
		e.State = epStarting
	case e.target == epStarted && e.State == epStarting:
		e.State = epStarted
	case e.target == epStopped && e.State == epStopping:
		e.State = epStopped
	}
}

func (s *Server) lookupEndpoint(w http.ResponseWriter, r *http.Request) *endpoint {
	e, ok := s.endpoints[r.PathValue("id")]
	if !ok {
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("endpoint %q not found", r.PathValue("id")))
	}
	return e
}

func (s *Server) getEndpoint(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.lookupEndpoint(w, r); e != nil {
		writeJSON(w, http.StatusOK, e.dedicatedEndpoint)
	}
}

func listItem(e dedicatedEndpoint) endpointListItem {
	return endpointListItem{Object: "endpoint", ID: e.ID, Name: e.Name, Model: e.Model, Type: e.Type,
		Owner: e.Owner, State: e.State, CreatedAt: e.CreatedAt}
}

// serverlessEndpoint is the shared endpoint the real list shows for a
// catalogue model: owned by "together", always STARTED, with a stable id.
func serverlessEndpoint(m modelObject) dedicatedEndpoint {
	h := sha256.Sum256([]byte(m.ID))
	return dedicatedEndpoint{ID: "endpoint-" + hex.EncodeToString(h[:8]), Name: m.ID, Model: m.ID,
		Type: epServerless, Owner: "together", State: epStarted, CreatedAt: time.Unix(m.Created, 0).UTC()}
}

// listEndpoints answers GET /endpoints in the {"object":"list","data":[...]}
// envelope. Like the real list it holds the account's dedicated endpoints
// and a serverless one per catalogue model; mine=true keeps the caller's
// own, type=dedicated|serverless keeps one kind.
func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	typ := q.Get("type")
	if typ != "" && typ != epDedicated && typ != epServerless {
		writeError(w, r, http.StatusBadRequest, "invalid_request", "type must be dedicated or serverless")
		return
	}
	mine := false
	if v := q.Get("mine"); v != "" {
		var err error
		if mine, err = strconv.ParseBool(v); err != nil {
			writeError(w, r, http.StatusBadRequest, "invalid_request", "mine must be true or false")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	all := make([]dedicatedEndpoint, 0, len(s.endpoints)+len(s.models))
	for _, id := range sortedKeys(s.endpoints) {
		all = append(all, s.endpoints[id].dedicatedEndpoint)
	}
	for _, m := range s.models {
		all = append(all, serverlessEndpoint(m))
	}
	out := []endpointListItem{}
	for _, e := range all {
		if (typ == "" || e.Type == typ) && (!mine || e.Owner == simUser) {
			out = append(out, listItem(e))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out})
}

func (s *Server) updateEndpoint(w http.ResponseWriter, r *http.Request) {
	var req endpointUpdateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.lookupEndpoint(w, r)
	if e == nil {
		return
	}
	if req.DisplayName != "" {
		e.DisplayName = req.DisplayName
	}
	if req.Autoscaling != nil {
		e.Autoscaling = *req.Autoscaling
	}
	switch req.State {
	case epStopped:
		if e.State != epStopped {
			e.State, e.target = epStopping, epStopped
		}
	case epStarted:
		if e.State != epStarted {
			e.State, e.target = epPending, epStarted
		}
	case "":
	default:
		writeError(w, r, http.StatusBadRequest, "invalid_request", "state must be STARTED or STOPPED")
		return
	}
	writeJSON(w, http.StatusOK, e.dedicatedEndpoint)
}

func (s *Server) deleteEndpoint(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.lookupEndpoint(w, r); e != nil {
		delete(s.endpoints, e.ID)
		w.WriteHeader(http.StatusNoContent)
	}
}

func defaultModels() []modelObject {
	mk := func(id, typ, org string, ctx int64) modelObject {
		return modelObject{ID: id, Object: "model", Created: 1700000000, Type: typ, DisplayName: id,
			Organization: org, ContextLength: ctx, Pricing: &modelPricing{Input: 0.2, Output: 0.2}}
	}
	return []modelObject{
		mk("meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", "chat", "Meta", 131072),
		// The replacement the samples migrate to.
		mk("meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "chat", "Meta", 131072),
		mk("meta-llama/Llama-3.3-70B-Instruct-Turbo", "chat", "Meta", 131072),
		mk("Qwen/Qwen2.5-7B-Instruct", "chat", "Qwen", 32768),
		mk("BAAI/bge-large-en-v1.5", "embedding", "BAAI", 512),
	}
}

// supportedModelFor is a model's /v2/supported-models entry.
func supportedModelFor(m modelObject, status string) supportedModel {
	created := time.Unix(m.Created, 0).UTC()
	caps := []string{"CAPABILITY_CHAT"}
	if m.Type == "embedding" {
		caps = []string{"CAPABILITY_EMBEDDING"}
	}
	return supportedModel{
		ID: m.ID, Name: m.ID, DisplayName: m.DisplayName, DisplayType: m.Type, Status: status,
		Publisher: m.Organization, Capabilities: caps, CreatedAt: created, UpdatedAt: created,
		DeploymentProfiles: []json.RawMessage{}, InputModalities: []string{"MODALITY_TEXT"},
		OutputModalities: []string{"MODALITY_TEXT"}, Products: []string{"PRODUCT_SERVERLESS", "PRODUCT_DEDICATED"},
	}
}

// DeprecateModel marks a model SUPPORTED_MODEL_STATUS_DEPRECATED in
// /v2/supported-models (adding it if unknown) — which, as on the real
// catalogue, names no replacement and no sunset — and pushes
// model.deprecated with replacement and sunsetDate in the project's own
// push contract.
func (s *Server) DeprecateModel(id, replacement, sunsetDate string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.ContainsFunc(s.models, func(m modelObject) bool { return m.ID == id }) {
		s.models = append(s.models, modelObject{ID: id, Object: "model", Created: s.now().Unix(), Type: "chat", DisplayName: id})
	}
	s.deprecated[id] = true
	s.emit(togetherv1.EventModelDeprecated, push.ModelDeprecated{ModelID: id, ReplacementModel: replacement, SunsetDate: sunsetDate})
}

// AddModel lists a model in GET /v1/models (type chat), as Together lists
// one of its own; it is a no-op for a model already listed.
func (s *Server) AddModel(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.ContainsFunc(s.models, func(m modelObject) bool { return m.ID == id }) {
		s.models = append(s.models, modelObject{ID: id, Object: "model", Created: s.now().Unix(), Type: "chat", DisplayName: id})
	}
}

// listModels answers a bare array, like the real route.
func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, http.StatusOK, append([]modelObject{}, s.models...))
}

// supportedModelsPageSize is the simulator's page size, small so that
// clients must follow next_cursor.
const supportedModelsPageSize = 3

// listSupportedModels answers GET /v2/supported-models one page at a time
// (limit, after = the previous page's next_cursor).
func (s *Server) listSupportedModels(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := supportedModelsPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			writeError(w, r, http.StatusBadRequest, "invalid_request", "limit must be a positive integer")
			return
		}
		limit = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	start := 0
	if after := q.Get("after"); after != "" {
		i := slices.IndexFunc(s.models, func(m modelObject) bool { return m.ID == after })
		if i < 0 {
			writeError(w, r, http.StatusBadRequest, "invalid_request", "after is not a cursor this list gave")
			return
		}
		start = i + 1
	}
	page := supportedModelPage{Data: []supportedModel{}}
	for i := start; i < len(s.models) && len(page.Data) < limit; i++ {
		status := statusSupported
		if s.deprecated[s.models[i].ID] {
			status = statusDeprecated
		}
		page.Data = append(page.Data, supportedModelFor(s.models[i], status))
		if len(page.Data) == limit && i+1 < len(s.models) {
			page.NextCursor = s.models[i].ID
		}
	}
	writeJSON(w, http.StatusOK, page)
}
