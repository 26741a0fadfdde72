#!/usr/bin/env bash
# The main job on the embedded default: bring up the local control plane
# (building it on first use) and show windlass talking to it.
#
# It leaves the control plane running so you can explore; stop it with
#   deploy/local/control-plane.sh down
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

step() { printf '\n==> %s\n' "$*"; }

deploy/local/prerequisites.sh

step "local control plane (first run builds Kubernetes from Go modules: about 7 minutes)"
kubeconfig_line=$(deploy/local/control-plane.sh up | tail -n 1)
export KUBECONFIG=${kubeconfig_line#KUBECONFIG=}
echo "KUBECONFIG=$KUBECONFIG"

step "building windlass"
cargo build --locked --quiet --bin windlass
windlass=target/debug/windlass

step "windlass check: is this cluster fit for windlass?"
$windlass check

step "the cluster windlass talks to"
deploy/local/control-plane.sh kubectl get namespaces
deploy/local/control-plane.sh status

cat <<EOF2

The control plane keeps running. Try:
  export KUBECONFIG=$KUBECONFIG
  $windlass --help
  deploy/local/control-plane.sh kubectl get all -A
Stop it with: deploy/local/control-plane.sh down
EOF2
