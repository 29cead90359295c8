# together-operator Makefile. Every tool it needs is built from the Go module
# proxy into bin/; nothing else has to be installed by hand.

IMG ?= together-operator:dev
K8S_VERSION ?= 1.37.2
LOCALBIN ?= $(shell pwd)/bin
K8S_ASSETS ?= $(LOCALBIN)/k8s/$(K8S_VERSION)-linux-amd64
# Honour a KUBEBUILDER_ASSETS the user already set; otherwise use ours.
KUBEBUILDER_ASSETS ?= $(K8S_ASSETS)
export KUBEBUILDER_ASSETS
export GOTOOLCHAIN = local

CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
KUSTOMIZE ?= $(LOCALBIN)/kustomize
CRD_REF_DOCS ?= $(LOCALBIN)/crd-ref-docs
CONTROLLER_TOOLS_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.1
CRD_REF_DOCS_VERSION ?= v0.3.0

# An explicit -timeout per package: a hung suite fails with a stack dump
# within the CI budget. Every long wait inside the suites has its own
# shorter Eventually timeout with a message saying what it waited for.
GO_TEST_FLAGS ?= -race -count=1 -timeout 20m
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets and what they do.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

# api/ is a Go module of its own (the root module replaces it with ./api):
# its types are generated from within it, the operator's RBAC from the root.
API_MODULE := api

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC from the API types' markers.
	cd $(API_MODULE) && $(CONTROLLER_GEN) crd:allowDangerousTypes=true paths="./..." output:crd:artifacts:config=../config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=manager-role paths="./..." output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	cd $(API_MODULE) && $(CONTROLLER_GEN) object:headerFile="../hack/boilerplate.go.txt" paths="./..."

.PHONY: docs
docs: crd-ref-docs ## Generate the CRD reference (docs/api.md) from the Go types.
	$(CRD_REF_DOCS) --source-path=./api --config=hack/crd-ref-docs.yaml --renderer=markdown --output-path=docs/api.md

.PHONY: observability
observability: ## Export the alerting rules, ServiceMonitor and Grafana dashboard into the Helm chart (a test fails when stale).
	go run ./internal/observability/gen

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...
	cd $(API_MODULE) && go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...
	cd $(API_MODULE) && go vet ./...

.PHONY: check-fmt
check-fmt: ## Fail when a file is not gofmt-formatted.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

.PHONY: test
test: check-fmt vet envtest controller-gen kustomize crd-ref-docs ## Run fmt/vet checks, unit tests, fuzz seed corpora and envtest suites.
	cd $(API_MODULE) && go test $(GO_TEST_FLAGS) ./...
	go test $(GO_TEST_FLAGS) ./...

.PHONY: test-soak
test-soak: envtest ## Run the heavier fault-suite variants.
	SOAK=1 go test -count=1 -timeout 60m ./test/...

.PHONY: bench
bench: envtest ## Run the benchmark scenarios; prints a table and writes bin/bench/results.json.
	go run ./test/bench -out $(LOCALBIN)/bench

.PHONY: envtest
envtest: ## Build kube-apiserver, kubectl and etcd for envtest (once; cached in bin/k8s).
	@if [ "$(KUBEBUILDER_ASSETS)" = "$(K8S_ASSETS)" ]; then hack/build-k8s.sh $(K8S_ASSETS); \
	else echo "using KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS)"; fi

##@ Build

.PHONY: build
build: ## Build the manager, simulator and the kubectl plugin (kubectl-together) into bin/.
	go build -o $(LOCALBIN)/manager ./cmd
	go build -o $(LOCALBIN)/together-sim ./cmd/together-sim
	go build -o $(LOCALBIN)/kubectl-together ./cmd/kubectl-together

.PHONY: run
run: envtest manifests ## Run the manager: against the current cluster, or a local control plane under .local/.
	hack/run.sh

.PHONY: demo
demo: envtest ## Start a local control plane, simulator and manager and run the sample flows.
	DEMO=1 hack/run.sh

.PHONY: docker-build
docker-build: ## Build the manager image (needs a Docker engine).
	docker build -t $(IMG) .

##@ Deployment

KUBECTL ?= $(shell if kubectl version --client >/dev/null 2>&1 && [ -z "$$LOCAL" ]; then echo kubectl; else echo $(K8S_ASSETS)/kubectl; fi)

.PHONY: install
install: manifests kustomize ## Install the CRDs into the cluster of the current kubeconfig.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Remove the CRDs from the cluster.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: deploy
deploy: manifests kustomize ## Deploy the manager to the cluster.
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Remove the manager from the cluster.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: build-installer
build-installer: manifests generate kustomize ## Write dist/install.yaml with CRDs, RBAC and the manager.
	mkdir -p dist
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default > dist/install.yaml

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen into bin/.
$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Install kustomize into bin/.
$(KUSTOMIZE):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

.PHONY: crd-ref-docs
crd-ref-docs: $(CRD_REF_DOCS) ## Install crd-ref-docs into bin/.
$(CRD_REF_DOCS):
	GOBIN=$(LOCALBIN) go install github.com/elastic/crd-ref-docs@$(CRD_REF_DOCS_VERSION)
