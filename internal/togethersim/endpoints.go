package togethersim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
	"github.com/together-operator/together-operator/pkg/push"

	"github.com/together-operator/together-operator/internal/together"
)

type endpoint struct {
	together.Endpoint
	// target is the state the endpoint is moving to (STARTED or STOPPED).
	target together.EndpointState
}

// AddV1Endpoint preloads a dedicated endpoint made with the v1 API before
// its create was retired (POST /v1/endpoints now answers 403, see
// v2endpoints.go): such endpoints keep serving and can still be read,
// stopped and deleted through v1. It returns the endpoint as created.
func (s *Server) AddV1Endpoint(req together.CreateEndpointRequest) (together.Endpoint, error) {
	if msg := validateEndpoint(req); msg != "" {
		return together.Endpoint{}, fmt.Errorf("togethersim: %s", msg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextID("endpoint")
	e := &endpoint{Endpoint: together.Endpoint{
		ID: id, Object: "endpoint", Name: simUser + "/" + req.Model + "-" + id[len(id)-6:],
		DisplayName: req.DisplayName, Model: req.Model, Hardware: req.Hardware, Type: together.EndpointTypeDedicated,
		Owner: simUser, State: together.EndpointPending, Autoscaling: req.Autoscaling, CreatedAt: s.now(),
	}, target: together.EndpointStarted}
	if req.State == string(together.EndpointStopped) {
		e.State, e.target = together.EndpointStopped, together.EndpointStopped
	}
	s.endpoints[id] = e
	return e.Endpoint, nil
}

func validateEndpoint(req together.CreateEndpointRequest) string {
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
	case e.target == together.EndpointStarted && e.State == together.EndpointPending:
		e.State = together.EndpointStarting
	case e.target == together.EndpointStarted && e.State == together.EndpointStarting:
		e.State = together.EndpointStarted
	case e.target == together.EndpointStopped && e.State == together.EndpointStopping:
		e.State = together.EndpointStopped
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
		writeJSON(w, http.StatusOK, e.Endpoint)
	}
}

// endpointListItem is one entry of GET /endpoints: the real list drops
// display_name, hardware and autoscaling from the endpoint object.
type endpointListItem struct {
	Object    string                 `json:"object"`
	ID        string                 `json:"id"`
	Name      string                 `json:"name"`
	Model     string                 `json:"model"`
	Type      string                 `json:"type"`
	Owner     string                 `json:"owner"`
	State     together.EndpointState `json:"state"`
	CreatedAt time.Time              `json:"created_at"`
}

func listItem(e together.Endpoint) endpointListItem {
	return endpointListItem{Object: "endpoint", ID: e.ID, Name: e.Name, Model: e.Model, Type: e.Type,
		Owner: e.Owner, State: e.State, CreatedAt: e.CreatedAt}
}

// serverlessEndpoint is the shared endpoint the real list shows for a
// catalogue model: owned by "together", always STARTED, with a stable id.
func serverlessEndpoint(m together.Model) together.Endpoint {
	h := sha256.Sum256([]byte(m.ID))
	return together.Endpoint{ID: "endpoint-" + hex.EncodeToString(h[:8]), Name: m.ID, Model: m.ID,
		Type: together.EndpointTypeServerless, Owner: "together", State: together.EndpointStarted,
		CreatedAt: time.Unix(m.Created, 0).UTC()}
}

// listEndpoints answers GET /endpoints in the {"object":"list","data":[...]}
// envelope. Like the real list it holds the account's dedicated endpoints
// and a serverless one per catalogue model; mine=true keeps the caller's
// own, type=dedicated|serverless keeps one kind.
func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	typ := q.Get("type")
	if typ != "" && typ != together.EndpointTypeDedicated && typ != together.EndpointTypeServerless {
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
	all := make([]together.Endpoint, 0, len(s.endpoints)+len(s.models))
	for _, id := range sortedKeys(s.endpoints) {
		all = append(all, s.endpoints[id].Endpoint)
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
	var req together.UpdateEndpointRequest
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
	switch together.EndpointState(req.State) {
	case together.EndpointStopped:
		if e.State != together.EndpointStopped {
			e.State, e.target = together.EndpointStopping, together.EndpointStopped
		}
	case together.EndpointStarted:
		if e.State != together.EndpointStarted {
			e.State, e.target = together.EndpointPending, together.EndpointStarted
		}
	case "":
	default:
		writeError(w, r, http.StatusBadRequest, "invalid_request", "state must be STARTED or STOPPED")
		return
	}
	writeJSON(w, http.StatusOK, e.Endpoint)
}

func (s *Server) deleteEndpoint(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.lookupEndpoint(w, r); e != nil {
		delete(s.endpoints, e.ID)
		w.WriteHeader(http.StatusNoContent)
	}
}

func defaultModels() []together.Model {
	mk := func(id, typ, org string, ctx int) together.Model {
		return together.Model{ID: id, Object: "model", Created: 1700000000, Type: typ, DisplayName: id,
			Organization: org, ContextLength: ctx, Pricing: &together.ModelPricing{Input: 0.2, Output: 0.2}}
	}
	return []together.Model{
		mk("meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", "chat", "Meta", 131072),
		mk("meta-llama/Llama-3.3-70B-Instruct-Turbo", "chat", "Meta", 131072),
		mk("Qwen/Qwen2.5-7B-Instruct", "chat", "Qwen", 32768),
		mk("BAAI/bge-large-en-v1.5", "embedding", "BAAI", 512),
	}
}

// DeprecateModel marks a model deprecated (adding it if unknown) and pushes
// model.deprecated. Deprecation info in /models is the simulator's
// extension; Together's v1 list has none.
func (s *Server) DeprecateModel(id, replacement, sunsetDate string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dep := &together.ModelDeprecation{ReplacementModel: replacement, SunsetDate: sunsetDate}
	found := false
	for i := range s.models {
		if s.models[i].ID == id {
			s.models[i].Deprecated, found = dep, true
		}
	}
	if !found {
		s.models = append(s.models, together.Model{ID: id, Object: "model", Created: s.now().Unix(), Type: "chat", Deprecated: dep})
	}
	s.emit(togetherv1.EventModelDeprecated, push.ModelDeprecated{ModelID: id, ReplacementModel: replacement, SunsetDate: sunsetDate})
}

// listModels answers a bare array, like the real route.
func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.models)
}
