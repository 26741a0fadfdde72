#!/usr/bin/env bash
# The main job on the embedded default: a GitOps round trip on the local
# control plane.
#
#   1. bring up the local control plane (building it on first use);
#   2. serve a git repository made from examples/ with `git daemon` on 127.0.0.1;
#   3. windlass diff, then windlass sync, of the guestbook application;
#   4. change the repository (a commit), then diff and sync again;
#   5. windlass history, and a windlass rollback to the first revision;
#   6. render the podinfo chart for production.
#
# It leaves the control plane running so you can explore; stop it with
#   deploy/local/control-plane.sh down
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo_root=$PWD

step() { printf '\n==> %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

deploy/local/prerequisites.sh

step "local control plane (first run builds Kubernetes from Go modules: about 7 minutes)"
kubeconfig_line=$(deploy/local/control-plane.sh up | tail -n 1)
export KUBECONFIG=${kubeconfig_line#KUBECONFIG=}
echo "KUBECONFIG=$KUBECONFIG"

step "building windlass"
cargo build --locked --quiet --bin windlass
windlass=$repo_root/target/debug/windlass
kubectl() { "$repo_root/deploy/local/control-plane.sh" kubectl "$@"; }

step "windlass check: is this cluster fit for windlass?"
show "$windlass" check

step "a git repository made from examples/, served by git daemon on 127.0.0.1"
demo=${WINDLASS_CACHE:-$HOME/.cache/windlass}/demo
rm -rf "$demo" && mkdir -p "$demo"
git init -q --bare -b main "$demo/deploy.git"
git clone -q "$demo/deploy.git" "$demo/work" 2>/dev/null
cp -r examples/. "$demo/work/"
git_in_work() { git -C "$demo/work" -c user.name=demo -c user.email=demo@windlass.invalid "$@"; }
git_in_work add -A
git_in_work commit -q -m "guestbook and podinfo"
git_in_work push -q origin main
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
git daemon --reuseaddr --export-all --listen=127.0.0.1 --port="$port" --base-path="$demo" \
  --detach --pid-file="$demo/git-daemon.pid" "$demo"
trap 'kill "$(cat "$demo/git-daemon.pid")" 2>/dev/null || true' EXIT
repo=git://127.0.0.1:$port/deploy.git
for _ in $(seq 1 50); do "$windlass" source resolve "$repo" >/dev/null 2>&1 && break; sleep 0.1; done
show "$windlass" source resolve "$repo" --ref main

# Start from a clean slate if the demo ran before.
kubectl delete namespace guestbook --ignore-not-found --wait=true >/dev/null

app=(--repo "$repo" --ref main --path guestbook -n guestbook --name guestbook)
step "windlass diff: what would change (exit code 1: there are changes)"
show "$windlass" diff "${app[@]}" | tail -n 25 || true

step "windlass sync (--no-wait: the local control plane has no nodes, so Pods stay Pending)"
show "$windlass" sync "${app[@]}" --prune --no-wait

step "the cluster now"
show kubectl -n guestbook get deployments,services,configmaps -l windlass.dev/app=guestbook.guestbook
show kubectl -n guestbook get secrets -l windlass.dev/revision -L windlass.dev/revision,windlass.dev/status

step "a change in git: three frontends become two, and the config gains a key"
sed -i 's/replicas: 3/replicas: 2/' "$demo/work/guestbook/frontend.yaml"
printf '  GREETING: "hello from windlass"\n' >>"$demo/work/guestbook/configmap.yaml"
git_in_work commit -q -am "two frontends, a greeting"
git_in_work push -q origin main
show "$windlass" diff "${app[@]}" || true
show "$windlass" sync "${app[@]}" --prune --no-wait
show "$windlass" diff "${app[@]}"

step "windlass history and windlass rollback (no render, no git: the stored revision)"
show "$windlass" history guestbook -n guestbook
show "$windlass" rollback guestbook -n guestbook --no-wait
show "$windlass" history guestbook -n guestbook
show kubectl -n guestbook get deployment frontend -o 'jsonpath={.spec.replicas} frontends after the rollback{"\n"}'

step "rendering a chart for one environment (no cluster needed)"
show "$windlass" render examples/podinfo-chart --env production | head -n 30

cat <<EOF

The control plane keeps running. Try:
  export KUBECONFIG=$KUBECONFIG
  $windlass diff --dir examples/guestbook -n guestbook --name guestbook
  deploy/local/control-plane.sh kubectl -n guestbook edit deployment frontend   # then diff again
Stop it with: deploy/local/control-plane.sh down
EOF
