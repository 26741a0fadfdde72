#!/usr/bin/env bash
# The main job on the embedded default: a GitOps round trip on the local
# control plane.
#
#   1. bring up the local control plane (building it on first use);
#   2. serve a git repository made from examples/ with `git daemon` on 127.0.0.1;
#   3. windlass diff, then windlass sync, of the guestbook application;
#   4. change the repository (a commit), then diff and sync again;
#   5. windlass history, and a windlass rollback to the first revision;
#   6. the controller: an Application for the podinfo chart syncs by itself,
#      a new commit goes live on the next interval, a hand edit shows as drift;
#   7. render the podinfo chart for production.
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

step "the controller: windlass keeps an Application in sync by itself"
"$windlass" crd >"$demo/crd.yaml"
show kubectl apply --server-side --force-conflicts -f "$demo/crd.yaml"
# A previous demo's Application keeps its finalizer (its controller stopped
# with the demo): release it, or deleting the namespace would wait for ever.
for app in $(kubectl -n podinfo get applications.windlass.dev -o name 2>/dev/null); do
  kubectl -n podinfo patch "$app" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null
done
kubectl delete namespace podinfo --ignore-not-found --wait=true >/dev/null
show kubectl create namespace podinfo
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$windlass" controller --http-address "127.0.0.1:$http_port" --watch-namespace podinfo \
  --cache-dir "$demo/controller-cache" >"$demo/controller.log" 2>&1 &
controller_pid=$!
trap 'kill "$controller_pid" 2>/dev/null || true; kill "$(cat "$demo/git-daemon.pid")" 2>/dev/null || true' EXIT
echo "windlass controller running (pid $controller_pid, log $demo/controller.log, metrics http://127.0.0.1:$http_port/metrics)"
cat >"$demo/podinfo-app.yaml" <<APP
apiVersion: windlass.dev/v1alpha1
kind: Application
metadata: { name: podinfo, namespace: podinfo }
spec:
  source: { repoURL: "$repo", ref: main, path: podinfo-chart }
  environment: staging
  sync:
    automated: true
    prune: true
    interval: 5s
    wait: false      # the local control plane has no nodes: Pods never start
APP
show cat "$demo/podinfo-app.yaml"
show kubectl apply -f "$demo/podinfo-app.yaml"
wait_for_commit() {
  for _ in $(seq 1 120); do
    [ "$(kubectl -n podinfo get application podinfo -o 'jsonpath={.status.lastAppliedCommit}')" = "$1" ] && return 0
    sleep 0.5
  done
  echo "the controller did not apply $1 in time; its log:" >&2
  tail -n 30 "$demo/controller.log" >&2
  return 1
}
wait_for_commit "$(git -C "$demo/work" rev-parse HEAD)"
show "$windlass" get -n podinfo
show kubectl -n podinfo get deployment podinfo -o 'jsonpath={.spec.replicas} replicas (staging){"\n"}'

step "a merge to main: staging gets 4 replicas; the controller applies it on its next interval"
sed -i 's/replicaCount: 2/replicaCount: 4/' "$demo/work/podinfo-chart/values/staging.yaml"
git_in_work commit -q -am "staging: 4 replicas"
git_in_work push -q origin main
started=$(python3 -c 'import time; print(time.time())')
wait_for_commit "$(git -C "$demo/work" rev-parse HEAD)"
python3 -c "import time; print(f'live {time.time() - $started:.1f} s after the push')"
show "$windlass" get -n podinfo
show kubectl -n podinfo get deployment podinfo -o 'jsonpath={.spec.replicas} replicas (staging){"\n"}'
show "$windlass" history podinfo -n podinfo

step "drift: a hand edit is reported (selfHeal is off), with the field and who changed it"
show kubectl -n podinfo scale deployment podinfo --replicas=7
for _ in $(seq 1 60); do
  drift=$(kubectl -n podinfo get application podinfo -o 'jsonpath={.status.conditions[?(@.type=="Drifted")].message}')
  [ -n "$drift" ] && break
  sleep 0.5
done
echo "Drifted: $drift"
show kubectl -n podinfo get events --field-selector involvedObject.kind=Application
show "$windlass" reconcile podinfo -n podinfo
show kubectl -n podinfo get deployment podinfo -o 'jsonpath={.spec.replicas} replicas after windlass reconcile{"\n"}'
kill "$controller_pid"; wait "$controller_pid" 2>/dev/null || true

step "rendering a chart for one environment (no cluster needed)"
show "$windlass" render examples/podinfo-chart --env production | head -n 30

cat <<EOF

The control plane keeps running. Try:
  export KUBECONFIG=$KUBECONFIG
  $windlass diff --dir examples/guestbook -n guestbook --name guestbook
  deploy/local/control-plane.sh kubectl -n guestbook edit deployment frontend   # then diff again
Stop it with: deploy/local/control-plane.sh down
EOF
