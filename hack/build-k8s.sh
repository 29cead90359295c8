#!/usr/bin/env bash
# Builds the control-plane binaries envtest needs (kube-apiserver, kubectl,
# etcd) from the pinned Go module in hack/k8s, because prebuilt envtest
# binaries cannot be downloaded everywhere this project is built.
#
# Usage: hack/build-k8s.sh OUTDIR
# Each binary is rebuilt only when missing. A cold build takes about five
# minutes on two cores, so progress is printed as each binary starts.
set -euo pipefail

out=${1:?usage: build-k8s.sh OUTDIR}
version=v1.37.2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${version} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"

build() {
  local name=$1 pkg=$2 note=$3
  if [ -x "$out/$name" ]; then
    return 0
  fi
  echo ">> building $name from $pkg ($note)"
  local start=$SECONDS
  (cd "$here/k8s" && CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -ldflags "$ldflags" -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
  echo ">> built $name in $((SECONDS - start))s"
}

build etcd go.etcd.io/etcd/server/v3 "about 30s cold"
build kubectl k8s.io/kubernetes/cmd/kubectl "about 30s cold"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "about 5 min cold; cached afterwards"
