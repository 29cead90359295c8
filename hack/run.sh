#!/usr/bin/env bash
# hack/run.sh runs the operator for development; `make run` and `make demo`
# call it.
#
# With a reachable cluster (the current kubeconfig answers) and LOCAL unset,
# it installs the CRDs there and runs the manager against it. Otherwise it
# starts a control plane of its own from the binaries in bin/k8s (etcd and
# kube-apiserver, no kubelet: Deployments are stored but never get Pods),
# keeping its data, certificates and kubeconfig under .local/ so that
# resources survive a restart.
#
# Without TOGETHER_API_KEY it also starts together-sim, the local stand-in
# for the Together API, so nothing leaves the machine. With DEMO=1 it then
# applies the samples, lets the simulator push signed events, and prints the
# resources as they move.
#
# Ctrl-C stops everything it started. Logs are under .local/logs/ (for the
# demo, which always starts from an empty control plane, .local/demo/logs/).
#
# Settings (environment): LOCAL=1, DEMO=1, TOGETHER_API_KEY, TOGETHER_BASE_URL,
# APISERVER_PORT (16443), ETCD_PORT (12379), SIM_ADDR (127.0.0.1:8787),
# the manager's ports METRICS_PORT (8080), PROBE_PORT (8081) and EVENTS_PORT
# (8090), POLL_INTERVAL (5s with the simulator), the simulator's pace
# SIM_STEP_INTERVAL (2s; 4s in the demo) and SIM_TOTAL_STEPS (5; 6 in the
# demo), K8S_VERSION (1.37.2).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

K8S_VERSION=${K8S_VERSION:-1.37.2}
ASSETS=${KUBEBUILDER_ASSETS:-$ROOT/bin/k8s/$K8S_VERSION-linux-amd64}
KUBECTL_BIN=$ASSETS/kubectl
STATE=$ROOT/.local
DEMO=${DEMO:-}
LOCAL=${LOCAL:-}
if [[ -n $DEMO ]]; then
	# The demo always runs on a control plane of its own, started empty, so
	# that it touches neither a real cluster nor the data of `make run`.
	STATE=$ROOT/.local/demo
	LOCAL=1
	rm -rf "$STATE/etcd"
fi
LOGS=$STATE/logs
REL_STATE=${STATE#"$ROOT"/}
REL_LOGS=${LOGS#"$ROOT"/}
APISERVER_PORT=${APISERVER_PORT:-16443}
ETCD_PORT=${ETCD_PORT:-12379}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
SIM_ADDR=${SIM_ADDR:-127.0.0.1:8787}
METRICS_PORT=${METRICS_PORT:-8080}
PROBE_PORT=${PROBE_PORT:-8081}
EVENTS_PORT=${EVENTS_PORT:-8090}
EVENTS_URL=http://127.0.0.1:$EVENTS_PORT

# Every process this script starts, so that cleanup stops exactly those.
PIDS=()
NAMES=()

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ((${#PIDS[@]})); then
		local order=()
		for ((i = ${#NAMES[@]} - 1; i >= 0; i--)); do order+=("${NAMES[i]}"); done
		say "stopping ${order[*]}"
	fi
	# Stop in reverse start order: the manager before the API server it
	# talks to, the API server before etcd.
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM "${PIDS[i]}" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "${PIDS[i]}" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "${PIDS[i]}" 2>/dev/null; then
			echo "${NAMES[i]} did not stop within 10s; killing it"
			kill -KILL "${PIDS[i]}" 2>/dev/null || true
		fi
		wait "${PIDS[i]}" 2>/dev/null || true
	done
	if ((${#PIDS[@]})); then
		if [[ -n $DEMO ]]; then
			echo "stopped; logs are in $REL_LOGS/ (the next 'make demo' starts from an empty control plane again)"
		else
			echo "stopped; logs are in $REL_LOGS/, data in $REL_STATE/ (delete it to start afresh)"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
# Ctrl-C is how a user stops it: a clean stop, so exit 0 and make stays quiet.
trap 'exit 0' INT TERM

# start NAME LOGFILE CMD... runs CMD in the background with its output in
# LOGFILE and remembers it for cleanup. CMD runs in a session of its own so
# that Ctrl-C reaches only this script, which then stops the processes in
# order: the manager before the API server, the API server before etcd.
start() {
	local name=$1 log=$2
	shift 2
	setsid "$@" >"$log" 2>&1 </dev/null &
	PIDS+=("$!")
	NAMES+=("$name")
}

# alive fails when any started process has exited, naming it and showing
# the end of its log.
alive() {
	for i in "${!PIDS[@]}"; do
		if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
			echo "${NAMES[i]} exited; the end of $REL_LOGS/${NAMES[i]}.log:" >&2
			tail -n 20 "$LOGS/${NAMES[i]}.log" >&2 || true
			return 1
		fi
	done
}

# port_free fails when something already listens on host:port.
port_free() {
	! (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# need_port HOST PORT HINT fails, saying what to do, when the port is taken.
need_port() {
	port_free "$1" "$2" || die "port $2 on $1 is in use (another 'make run'?): $3"
}

kc() { "$KUBECTL_BIN" "$@"; }

[[ -x $KUBECTL_BIN ]] || die "$KUBECTL_BIN is missing: run 'make envtest' (make run does this)"
mkdir -p "$LOGS"

# --- Which cluster --------------------------------------------------------

mode=local
if [[ -z $LOCAL ]] && [[ -n ${KUBECONFIG:-} || -f $HOME/.kube/config ]]; then
	if timeout 8 "$KUBECTL_BIN" version --request-timeout=5s >/dev/null 2>&1; then
		mode=remote
	else
		say "the current kubeconfig does not answer; starting a local control plane under $REL_STATE/"
	fi
fi

# Check every port before starting anything, so that a clash fails fast.
need_port 127.0.0.1 "$METRICS_PORT" "stop that process or set METRICS_PORT for the manager's metrics"
need_port 127.0.0.1 "$PROBE_PORT" "stop that process or set PROBE_PORT for the manager's health probes"
need_port 127.0.0.1 "$EVENTS_PORT" "stop that process or set EVENTS_PORT for the manager's events endpoint"
if [[ -z ${TOGETHER_API_KEY:-} ]]; then
	need_port "${SIM_ADDR%:*}" "${SIM_ADDR##*:}" "stop that process or set SIM_ADDR=host:port for the simulator"
fi
if [[ $mode == local ]]; then
	need_port 127.0.0.1 "$ETCD_PORT" "stop that process or set ETCD_PORT (it and the next port are used)"
	need_port 127.0.0.1 "$ETCD_PEER_PORT" "stop that process or set ETCD_PORT (it and the next port are used)"
	need_port 127.0.0.1 "$APISERVER_PORT" "stop that process or set APISERVER_PORT"
fi

# --- Local control plane --------------------------------------------------

# make_pki writes, once, a CA, the API server's serving certificate, the
# service-account signing key and an admin token. They are kept so that the
# kubeconfig stays valid across restarts.
make_pki() {
	local pki=$STATE/pki
	mkdir -p "$pki"
	chmod 700 "$pki"
	if [[ ! -f $pki/apiserver.crt ]]; then
		say "generating a CA, serving certificate and service-account key in $REL_STATE/pki"
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=together-operator-local-ca" \
			-keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
		openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
			-keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$pki/ext.cnf"
		openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
			-days 3650 -extfile "$pki/ext.cnf" -out "$pki/apiserver.crt" 2>/dev/null
		openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
		openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
	fi
	if [[ ! -f $pki/tokens.csv ]]; then
		# A static token in system:masters: the local cluster's only user.
		printf '%s,admin,admin,system:masters\n' "$(openssl rand -hex 24)" >"$pki/tokens.csv"
	fi
	chmod 600 "$pki"/*.key "$pki/tokens.csv"
}

write_kubeconfig() {
	local token
	token=$(cut -d, -f1 "$STATE/pki/tokens.csv")
	cat >"$STATE/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: together-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $STATE/pki/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: together-local
  context:
    cluster: together-local
    user: admin
    namespace: default
current-context: together-local
EOF
	chmod 600 "$STATE/kubeconfig"
}

start_control_plane() {
	make_pki
	write_kubeconfig
	local pki=$STATE/pki

	say "starting etcd (data in $REL_STATE/etcd)"
	start etcd "$LOGS/etcd.log" "$ASSETS/etcd" \
		--name=local \
		--data-dir="$STATE/etcd" \
		--listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
		--advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster="local=http://127.0.0.1:$ETCD_PEER_PORT"

	say "starting kube-apiserver on https://127.0.0.1:$APISERVER_PORT"
	# No controller-manager runs, so nothing would mint service-account
	# tokens: the ServiceAccount admission plugin is off, as in envtest.
	start kube-apiserver "$LOGS/kube-apiserver.log" "$ASSETS/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
		--bind-address=127.0.0.1 \
		--endpoint-reconciler-type=none \
		--secure-port="$APISERVER_PORT" \
		--tls-cert-file="$pki/apiserver.crt" \
		--tls-private-key-file="$pki/apiserver.key" \
		--client-ca-file="$pki/ca.crt" \
		--token-auth-file="$pki/tokens.csv" \
		--authorization-mode=RBAC \
		--service-account-issuer="https://127.0.0.1:$APISERVER_PORT" \
		--service-account-key-file="$pki/sa.pub" \
		--service-account-signing-key-file="$pki/sa.key" \
		--service-cluster-ip-range=10.0.0.0/24 \
		--disable-admission-plugins=ServiceAccount \
		--allow-privileged=true

	export KUBECONFIG=$STATE/kubeconfig
	local ok=
	for _ in $(seq 1 120); do
		alive || die "the control plane did not start"
		if kc get --raw /readyz >/dev/null 2>&1; then
			ok=1
			break
		fi
		sleep 0.5
	done
	[[ -n $ok ]] || die "kube-apiserver not ready after 60s; see $REL_LOGS/kube-apiserver.log"
	# The API server creates the default namespace shortly after readyz.
	for _ in $(seq 1 40); do
		kc get namespace default >/dev/null 2>&1 && break
		sleep 0.25
	done
}

if [[ $mode == local ]]; then
	start_control_plane
	kubeconfig_hint="export KUBECONFIG=$STATE/kubeconfig"
else
	say "using the cluster of the current kubeconfig ($(kc config current-context 2>/dev/null || echo '?'))"
	kubeconfig_hint=""
fi

say "installing the CRDs"
kc apply --server-side --force-conflicts -f config/crd/bases >/dev/null
kc wait --for=condition=Established --timeout=60s -f config/crd/bases >/dev/null

# --- Binaries -------------------------------------------------------------

say "building bin/manager and bin/together-sim"
go build -o bin/manager ./cmd
go build -o bin/together-sim ./cmd/together-sim

# --- Together API: the real one, or the simulator -------------------------

mgr_env=()
poll_interval=${POLL_INTERVAL:-}
if [[ -n ${TOGETHER_API_KEY:-} ]]; then
	say "using the Together API at ${TOGETHER_BASE_URL:-https://api.together.ai/v1} with \$TOGETHER_API_KEY"
else
	# A key of its own, so the manager is shown to authenticate as it would
	# against Together.
	sim_key=local-$(openssl rand -hex 12)
	sim_args=(serve --addr="$SIM_ADDR" --api-key="$sim_key")
	if [[ -n $DEMO ]]; then
		# A human pace: a fine-tune takes about half a minute.
		sim_args+=(--step-interval="${SIM_STEP_INTERVAL:-4s}" --total-steps="${SIM_TOTAL_STEPS:-6}")
	else
		sim_args+=(--step-interval="${SIM_STEP_INTERVAL:-2s}" --total-steps="${SIM_TOTAL_STEPS:-5}")
	fi
	say "starting together-sim (the local Together API stand-in) on http://$SIM_ADDR"
	start together-sim "$LOGS/together-sim.log" bin/together-sim "${sim_args[@]}"
	mgr_env=(TOGETHER_API_KEY="$sim_key" TOGETHER_BASE_URL="http://$SIM_ADDR/v1")
	poll_interval=${poll_interval:-5s}
fi
poll_interval=${poll_interval:-30s}

# --- Manager --------------------------------------------------------------

say "starting the manager (metrics http://127.0.0.1:$METRICS_PORT/metrics, events $EVENTS_URL/webhooks/together/<namespace>/<subscription>)"
start manager "$LOGS/manager.log" env "${mgr_env[@]}" bin/manager \
	--metrics-bind-address=":$METRICS_PORT" --metrics-secure=false \
	--health-probe-bind-address=":$PROBE_PORT" \
	--events-bind-address=":$EVENTS_PORT" \
	--poll-interval="$poll_interval" \
	--models-poll-interval=1m \
	--operator-image="${OPERATOR_IMAGE:-together-operator:dev}" \
	--shared-api-key-namespaces="${SHARED_API_KEY_NAMESPACES:-default}"

ready=
for _ in $(seq 1 120); do
	alive || die "the manager did not start"
	if (exec 3<>"/dev/tcp/127.0.0.1/$PROBE_PORT" && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 && grep -q '200 OK' <&3) 2>/dev/null; then
		ready=1
		break
	fi
	sleep 0.5
done
[[ -n $ready ]] || die "the manager is not ready after 60s; see $REL_LOGS/manager.log"

kubectl_rel=${KUBECTL_BIN#"$ROOT"/}
echo
say "ready. In another shell:"
if [[ -n $kubeconfig_hint ]]; then
	echo "    $kubeconfig_hint; alias kubectl=$KUBECTL_BIN"
else
	echo "    alias kubectl=$KUBECTL_BIN   # or your own kubectl"
fi
if [[ -n $DEMO ]]; then
	echo "    kubectl get together"
else
	echo "    kubectl apply -f config/samples/ && kubectl get together"
fi
echo "(kubectl is $kubectl_rel; logs in $REL_LOGS/; Ctrl-C here stops everything)"
echo

# --- Demo -----------------------------------------------------------------

demo() {
	[[ -z ${TOGETHER_API_KEY:-} ]] || die "DEMO=1 drives the simulator; unset TOGETHER_API_KEY"
	say "applying the samples (Secret, subscription, Deployment chat-app, fine-tune, batch, migration)"
	kc apply -f config/samples/ >/dev/null
	# Register the simulator as a sender: it then pushes signed events to
	# this subscription's path, alongside the manager's polling.
	say "registering the simulator as a sender for subscription default"
	kc patch togetherwebhooksubscription default --type=merge \
		-p "{\"spec\":{\"register\":true,\"url\":\"$EVENTS_URL/webhooks/together/default/default\"}}" >/dev/null
	# The simulator pushes a deprecation of the model chat-app runs, signed
	# with the subscription's secret; the subscription maps it to a
	# replacement and an Immediate migration, which patches chat-app.
	say "pushing a signed model.deprecated event for meta-llama/Llama-3-8b-chat-hf"
	for _ in $(seq 1 40); do
		[[ $(kc get tws default -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]] && break
		sleep 0.5
	done
	local secret
	secret=$(kc get secret together-webhook -o jsonpath='{.data.secret}' | base64 -d)
	TOGETHER_WEBHOOK_SECRET=$secret bin/together-sim send \
		--url="$EVENTS_URL/webhooks/together/default/default" \
		--type=model.deprecated \
		--data="{\"model_id\":\"meta-llama/Llama-3-8b-chat-hf\",\"sunset_date\":\"$(date -u -d '+30 days' +%F)\"}"

	local deadline=$((SECONDS + 300)) done_all=
	while ((SECONDS < deadline)); do
		alive || die "a process exited during the demo"
		clear 2>/dev/null || true
		echo "make demo — $(date +%T) — Ctrl-C stops everything"
		echo
		demo_table | cut -c1-120
		local ft batch mig
		ft=$(kc get tft support-bot -o jsonpath='{.status.phase}' 2>/dev/null || true)
		batch=$(kc get tbatch nightly-summaries -o jsonpath='{.status.phase}' 2>/dev/null || true)
		mig=$(kc get tmm -l together.ai/created-by=deprecation -o jsonpath='{.items[0].status.phase}' 2>/dev/null || true)
		if [[ $ft =~ ^(Succeeded|Failed|Cancelled)$ && $batch =~ ^(Succeeded|Failed|Expired|Cancelled)$ && $mig =~ ^(Completed|Failed)$ ]]; then
			done_all=1
			break
		fi
		sleep 3
	done
	echo
	if [[ -n $done_all ]]; then
		say "the three flows ended: fine-tune support-bot $ft, batch nightly-summaries $batch, migration from the pushed deprecation $mig"
		say "$(kc get tft support-bot -o jsonpath='support-bot: step {.status.step}, loss {.status.loss}, eval loss {.status.evalLoss} (gate: {.spec.deploy.maxEvalLoss}), deployed {.status.deployedModel}' 2>/dev/null)"
		say "$(kc get tbatch nightly-summaries -o jsonpath='nightly-summaries: {.status.usage.promptTokens} prompt + {.status.usage.completionTokens} completion = {.status.usage.totalTokens} tokens, from the output lines' 2>/dev/null)"
	else
		say "not finished after 5 minutes (fine-tune '$ft', batch '$batch', migration '$mig'); see $REL_LOGS/manager.log"
	fi
	# Whatever is not Ready says why, in its own words: the sample migration
	# llama-3-8b-chat is Manual, so it waits for a person by design.
	local not_ready
	not_ready=$(kc get together -o jsonpath='{range .items[*]}{.kind}{"\t"}{.metadata.name}{"\t"}{.status.conditions[?(@.type=="Ready")].status}{"\t"}{.status.conditions[?(@.type=="Ready")].reason}{"\t"}{.status.conditions[?(@.type=="Ready")].message}{"\n"}{end}' 2>/dev/null |
		awk -F'\t' '$3 != "True" { printf "  - %s %s: Ready %s, %s. %s\n", $1, $2, ($3 == "" ? "Unknown" : $3), $4, $5 }')
	if [[ -n $not_ready ]]; then
		echo
		say "not Ready (the READY column above), and why:"
		echo "$not_ready"
	fi
	cat <<EOF

Where to look (with the export/alias above):
    kubectl get together -o wide              # more columns: attempt, eval loss, target, reasons
    kubectl describe tft support-bot          # conditions, checkpoints, the deployed model, Events
    kubectl get deploy chat-app -o jsonpath='{.metadata.annotations.together\.ai/deployed-by\.app\.TOGETHER_MODEL}'   # who holds it
    kubectl get configmap nightly-summaries-output -o yaml   # the batch results
    kubectl describe tmm -l together.ai/created-by=deprecation   # what was patched, from what to what
    kubectl annotate tmm llama-3-8b-chat together.ai/approve-migration=true   # approve the Manual sample migration
    kubectl get events --sort-by=.metadata.creationTimestamp
    curl -s http://127.0.0.1:$METRICS_PORT/metrics | grep '^together_'
    tail -f $REL_LOGS/manager.log

The manager keeps running; Ctrl-C stops it, the simulator and the control plane.
EOF
}

# demo_table prints the four kinds in columns that fit a 120-column
# terminal (kubectl get together shows each kind's full columns, wider than
# that), and the model chat-app runs with the fine-tune that holds it.
demo_table() {
	local ready='READY:.status.conditions[?(@.type=="Ready")].status,REASON:.status.conditions[?(@.type=="Ready")].reason'
	kc get tft -o "custom-columns=FINE-TUNE:.metadata.name,PHASE:.status.phase,ATTEMPT:.status.attempt,STEP:.status.step,LOSS:.status.loss,$ready" 2>&1 || true
	echo
	kc get tbatch -o "custom-columns=BATCH:.metadata.name,PHASE:.status.phase,PROGRESS %:.status.progress,TOKENS:.status.totalTokens,$ready" 2>&1 || true
	echo
	kc get tmm -o "custom-columns=MIGRATION:.metadata.name,STRATEGY:.spec.strategy,PHASE:.status.phase,TARGETS MOVED:.status.migrated,$ready" 2>&1 || true
	echo
	kc get tws -o "custom-columns=SUBSCRIPTION:.metadata.name,REGISTERED:.status.conditions[?(@.type==\"Registered\")].reason,LAST PUSH:.status.lastEventTime,$ready" 2>&1 || true
	echo
	printf 'chat-app TOGETHER_MODEL = %s\n' \
		"$(kc get deployment chat-app -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="TOGETHER_MODEL")].value}' 2>/dev/null)"
	printf '         held by fine-tune: %s\n' \
		"$(kc get deployment chat-app -o jsonpath='{.metadata.annotations.together\.ai/deployed-by\.app\.TOGETHER_MODEL}' 2>/dev/null)"
}

if [[ -n $DEMO ]]; then
	demo
	# Keep serving so that the user can look around; the manager's log is
	# in .local/demo/logs/manager.log rather than on screen.
	while alive; do sleep 1; done
	exit 1
fi

# Show the manager's log here, as `go run` would, until Ctrl-C or until
# something started exits.
tail -n +1 -F "$LOGS/manager.log" &
PIDS+=("$!")
NAMES+=("log-tail")
while alive; do sleep 1; done
exit 1
