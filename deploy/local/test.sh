#!/usr/bin/env bash
# The test command: install what is missing, build the local control plane
# and the external renderers kustomize and helm (cached), then formatting,
# lints and every test against the real control plane. .ci/run runs exactly
# this.
#
# A control plane that was already up is reused and left up; one this script
# started is stopped at the end. WINDLASS_TEST_KUBECONFIG points the tests
# at another cluster instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

phase_started=$SECONDS
timings=()
phase() { # name : closes the previous phase's timer
  timings+=("$1 $((SECONDS - phase_started))s")
  phase_started=$SECONDS
}

deploy/local/prerequisites.sh
phase prerequisites

# kustomize and helm at their pinned versions (cached), named for the tests
# through WINDLASS_KUSTOMIZE_BIN and WINDLASS_HELM_BIN.
deploy/local/tools.sh build >/dev/null
while IFS= read -r line; do export "$line"; done < <(deploy/local/tools.sh env)
phase tools

started_control_plane=no
if [ -z "${WINDLASS_TEST_KUBECONFIG:-}" ]; then
  if ! deploy/local/control-plane.sh status >/dev/null 2>&1; then
    started_control_plane=yes
    trap 'deploy/local/control-plane.sh down' EXIT
  fi
  deploy/local/control-plane.sh up
fi
phase control-plane

cargo fmt --check
phase fmt
cargo clippy --all-targets --locked -- -D warnings
phase clippy

log=$(mktemp)
status=0
cargo test --locked 2>&1 | tee "$log" || status=$?
phase test

if [ $started_control_plane = yes ]; then
  trap - EXIT
  deploy/local/control-plane.sh down
fi

echo "timings: ${timings[*]}"
# One closing line over all test binaries (cargo prints one per binary).
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "%d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
rm -f "$log"
exit $status
