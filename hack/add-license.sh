#!/usr/bin/env bash
# Prepends hack/boilerplate.go.txt to every Go file of the repository that
# does not carry it yet. Build constraints stay first, as Go requires.
set -euo pipefail
cd "$(dirname "$0")/.."
header=hack/boilerplate.go.txt
git ls-files --cached --others --exclude-standard '*.go' | while read -r f; do
  if grep -q 'Licensed under the Apache License, Version 2.0' "$f"; then continue; fi
  tmp=$(mktemp)
  if head -1 "$f" | grep -q '^//go:build'; then
    { head -1 "$f"; echo; cat "$header"; echo; tail -n +2 "$f" | sed '1{/^$/d}'; } > "$tmp"
  else
    { cat "$header"; echo; cat "$f"; } > "$tmp"
  fi
  mv "$tmp" "$f"
done
