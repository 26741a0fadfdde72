#!/usr/bin/env bash
# A real, local Kubernetes control plane for development, tests and the demo:
# etcd, kube-apiserver and kube-controller-manager, built from Go modules
# (deploy/local/etcd, deploy/local/kube) and started on 127.0.0.1.
#
#   control-plane.sh up          build what is missing, start, wait for /readyz;
#                                prints KUBECONFIG=<path> as its last line
#   control-plane.sh down        stop exactly the processes `up` started
#   control-plane.sh status      say what is running
#   control-plane.sh kubectl ... run the matching kubectl against it
#   control-plane.sh build       only build the binaries (cached per pin)
#   control-plane.sh reset       down, then delete the state directory
#
# Environment:
#   WINDLASS_CACHE      binary cache     (default ~/.cache/windlass)
#   WINDLASS_LOCAL_DIR  state directory  (default $WINDLASS_CACHE/local)
#
# There are no nodes (no kubelet), so Pods are accepted but stay Pending.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${WINDLASS_CACHE:-$HOME/.cache/windlass}
state=${WINDLASS_LOCAL_DIR:-$cache/local}
components=(etcd kube-apiserver kube-controller-manager)
service_cidr=10.0.0.0/24

log() { printf 'control-plane: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- pins and binaries -------------------------------------------------------

# The pinned version of a wrapper module's main dependency, read from its go.mod.
pinned_version() { # module-dir dependency
  awk -v dep="$2" '$1 == "require" && $2 == dep { print $3 } $1 == dep { print $2; exit }' \
    "$here/$1/go.mod" | head -n 1
}

kubernetes_version=$(pinned_version kube k8s.io/kubernetes)
etcd_version=$(pinned_version etcd go.etcd.io/etcd/server/v3)

# Binaries live in a directory named after the pin and a hash of the wrapper
# sources, so they are rebuilt exactly when the pin (or the wrapper) changes.
bin_dir() { # module-dir version
  local sum
  sum=$(cd "$here/$1" && find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort |
    xargs sha256sum | sha256sum | cut -c1-12)
  printf '%s/bin/%s-%s-%s' "$cache" "$1" "$2" "$sum"
}

kube_bin=$(bin_dir kube "$kubernetes_version")
etcd_bin=$(bin_dir etcd "$etcd_version")

binary() { # component
  case "$1" in
    etcd) echo "$etcd_bin/etcd" ;;
    *) echo "$kube_bin/$1" ;;
  esac
}

require_go() {
  command -v go >/dev/null 2>&1 ||
    die "Go is not installed; install Go 1.26 or newer (the README's test command does this)"
}

build_module() { # module-dir target-dir ldflags
  local dir=$1 target=$2 ldflags=$3
  [ -x "$target/.complete" ] && return 0
  require_go
  mkdir -p "$cache/bin"
  local tmp
  tmp=$(mktemp -d "$cache/bin/.build.XXXXXX")
  log "building $dir ($(basename "$target")); a cold build takes several minutes"
  local started=$SECONDS
  (cd "$here/$dir" && go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$tmp/" ./...) ||
    { rm -rf "$tmp"; die "building $dir failed (see the Go errors above)"; }
  printf '#!/bin/sh\n# built in %ss\n' "$((SECONDS - started))" >"$tmp/.complete"
  chmod +x "$tmp/.complete"
  rm -rf "$target"
  mv "$tmp" "$target"
  log "built $dir in $((SECONDS - started))s"
}

build() {
  mkdir -p "$cache"
  exec 8>"$cache/build.lock"
  flock 8
  local major minor ldflags="-s -w" pkg
  major=$(echo "$kubernetes_version" | sed -E 's/^v([0-9]+)\..*/\1/')
  minor=$(echo "$kubernetes_version" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=$kubernetes_version -X $pkg.gitMajor=$major"
    ldflags="$ldflags -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  build_module etcd "$etcd_bin" "-s -w"
  build_module kube "$kube_bin" "$ldflags"
  exec 8>&-
}

# --- certificates ------------------------------------------------------------

# sign NAME SUBJECT [SAN] : key and certificate signed by the local CA.
sign() {
  local name=$1 subject=$2 san=${3:-} ext
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$state/pki/$name.key" \
    -subj "$subject" -out "$state/pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$state/pki/$name.csr" -CA "$state/pki/ca.crt" -CAkey "$state/pki/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$state/pki/$name.crt" 2>/dev/null
  rm -f "$ext" "$state/pki/$name.csr"
}

generate_pki() {
  [ -f "$state/pki/.complete" ] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl is not installed (apt-get install openssl)"
  log "generating the CA, certificates and service-account keys in $state/pki"
  rm -rf "$state/pki"
  mkdir -p "$state/pki"
  chmod 700 "$state/pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=windlass-local-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$state/pki/ca.key" -out "$state/pki/ca.crt" 2>/dev/null
  local api_san="IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default"
  api_san="$api_san,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  sign etcd-server "/CN=etcd" "IP:127.0.0.1,DNS:localhost"
  sign apiserver "/CN=kube-apiserver" "$api_san"
  sign apiserver-etcd-client "/CN=kube-apiserver-etcd-client"
  sign admin "/O=system:masters/CN=windlass-admin"
  sign controller-manager "/CN=system:kube-controller-manager"
  openssl genrsa -out "$state/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$state/pki/sa.key" -pubout -out "$state/pki/sa.pub" 2>/dev/null
  touch "$state/pki/.complete"
}

write_kubeconfig() { # path user
  local path=$1 user=$2
  cat >"$path" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: windlass-local
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority: $state/pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $state/pki/$user.crt
    client-key: $state/pki/$user.key
contexts:
- name: windlass-local
  context: { cluster: windlass-local, user: $user }
current-context: windlass-local
EOF
  chmod 600 "$path"
}

# --- ports -------------------------------------------------------------------

port_free() { # port
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Free ports are asked from the kernel; the choice is kept in ports.env so a
# restarted control plane keeps its addresses and its etcd data.
choose_ports() {
  if [ -f "$state/ports.env" ]; then
    # shellcheck disable=SC1091
    . "$state/ports.env"
    if port_free "$etcd_port" && port_free "$etcd_peer_port" && port_free "$apiserver_port" &&
      port_free "$controller_manager_port"; then
      return 0
    fi
    log "a port from the last run is taken now; choosing new ports and starting with empty etcd data"
    rm -rf "$state/etcd"
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 is needed to find free ports (apt-get install python3)"
  read -r etcd_port etcd_peer_port apiserver_port controller_manager_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
  cat >"$state/ports.env" <<EOF
etcd_port=$etcd_port
etcd_peer_port=$etcd_peer_port
apiserver_port=$apiserver_port
controller_manager_port=$controller_manager_port
EOF
}

# --- processes ---------------------------------------------------------------

# True while the process exists and has not exited (a zombie has exited).
process_alive() { # pid
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

pid_of() { # component : prints the pid if that process is the one `up` started
  local file="$state/run/$1.pid" pid exe
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  [ -n "$pid" ] && process_alive "$pid" || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "${exe% (deleted)}" = "$(readlink -f "$(binary "$1")")" ] || return 1
  echo "$pid"
}

start() { # component args...
  local name=$1
  shift
  log "starting $name (log: $state/logs/$name.log)"
  # setsid: the process outlives the shell (and the test binary) that started
  # it; fds 8 and 9 are the locks, which it must not inherit.
  setsid "$(binary "$name")" "$@" </dev/null >>"$state/logs/$name.log" 2>&1 8>&- 9>&- &
  echo $! >"$state/run/$name.pid"
}

stop() { # component
  local pid
  pid=$(pid_of "$1") || { rm -f "$state/run/$1.pid"; return 0; }
  log "stopping $1 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    process_alive "$pid" || break
    sleep 0.1
  done
  if process_alive "$pid"; then
    log "$1 (pid $pid) did not stop within 10s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    while process_alive "$pid"; do sleep 0.1; done
  fi
  rm -f "$state/run/$1.pid"
}

all_running() {
  local c
  for c in "${components[@]}"; do pid_of "$c" >/dev/null || return 1; done
}

kubectl_admin() {
  "$kube_bin/kubectl" --kubeconfig "$state/admin.kubeconfig" "$@"
}

ready() {
  kubectl_admin get --raw /readyz >/dev/null 2>&1
}

# wait_for DESCRIPTION SECONDS COMMAND... : poll until COMMAND succeeds.
wait_for() {
  local what=$1 limit=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then
      die "$what did not happen within ${limit}s; see the logs in $state/logs"
    fi
    local c
    for c in "${components[@]}"; do
      if [ -f "$state/run/$c.pid" ] && ! process_alive "$(cat "$state/run/$c.pid")"; then
        tail -n 20 "$state/logs/$c.log" >&2 || true
        die "$c exited while waiting for: $what (log: $state/logs/$c.log)"
      fi
    done
    sleep 0.5
  done
}

default_service_account_exists() {
  kubectl_admin -n default get serviceaccount default >/dev/null 2>&1
}

up() {
  mkdir -p "$state"
  exec 9>"$state/lock"
  flock 9
  build
  if all_running && [ -f "$state/admin.kubeconfig" ] && ready; then
    log "already up"
    echo "KUBECONFIG=$state/admin.kubeconfig"
    return 0
  fi
  local c
  for c in kube-controller-manager kube-apiserver etcd; do stop "$c"; done
  mkdir -p "$state/run" "$state/logs" "$state/etcd" "$state/controller-manager"
  chmod 700 "$state/etcd"
  generate_pki
  choose_ports
  write_kubeconfig "$state/admin.kubeconfig" admin
  write_kubeconfig "$state/controller-manager.kubeconfig" controller-manager
  local pki=$state/pki

  # etcd: a single member; fsync is off because this is a throwaway
  # development store and tests are much faster without it.
  start etcd --name windlass --data-dir "$state/etcd" \
    --listen-client-urls "https://127.0.0.1:$etcd_port" \
    --advertise-client-urls "https://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "windlass=http://127.0.0.1:$etcd_peer_port" \
    --cert-file "$pki/etcd-server.crt" --key-file "$pki/etcd-server.key" \
    --trusted-ca-file "$pki/ca.crt" --client-cert-auth \
    --unsafe-no-fsync --log-level warn

  start kube-apiserver \
    --advertise-address 127.0.0.1 --bind-address 127.0.0.1 --secure-port "$apiserver_port" \
    --etcd-servers "https://127.0.0.1:$etcd_port" --etcd-cafile "$pki/ca.crt" \
    --etcd-certfile "$pki/apiserver-etcd-client.crt" --etcd-keyfile "$pki/apiserver-etcd-client.key" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range "$service_cidr" --allow-privileged \
    --cert-dir "$state/apiserver" --profiling=false

  wait_for "kube-apiserver /readyz" 180 ready

  start kube-controller-manager \
    --kubeconfig "$state/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$state/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$state/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$controller_manager_port" \
    --cert-dir "$state/controller-manager" --leader-elect=false \
    --use-service-account-credentials \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range "$service_cidr" --cluster-name windlass-local \
    --controllers '*' --profiling=false

  # The service-account controller creating `default` proves the controller
  # manager is up and reconciling.
  wait_for "the controller manager creating the default ServiceAccount" 120 \
    default_service_account_exists
  log "up: Kubernetes $kubernetes_version, etcd $etcd_version, API server https://127.0.0.1:$apiserver_port"
  echo "KUBECONFIG=$state/admin.kubeconfig"
}

down() {
  [ -d "$state" ] || { log "nothing to stop"; return 0; }
  exec 9>"$state/lock"
  flock 9
  local c
  for c in kube-controller-manager kube-apiserver etcd; do stop "$c"; done
  log "down"
}

status() {
  local c pid rc=0
  for c in "${components[@]}"; do
    if pid=$(pid_of "$c"); then
      printf '%-24s running (pid %s)\n' "$c" "$pid"
    else
      printf '%-24s stopped\n' "$c"
      rc=3
    fi
  done
  if [ $rc -eq 0 ]; then
    # shellcheck disable=SC1091
    . "$state/ports.env"
    if ready; then
      printf '%-24s ready at https://127.0.0.1:%s\n' "api" "$apiserver_port"
    else
      printf '%-24s not ready\n' "api"
      rc=3
    fi
    echo "KUBECONFIG=$state/admin.kubeconfig"
  fi
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  build) build ;;
  reset) down && rm -rf "$state" && log "removed $state" ;;
  kubectl)
    shift
    [ -x "$kube_bin/kubectl" ] || die "kubectl is not built yet; run: $0 up"
    [ -f "$state/admin.kubeconfig" ] || die "no kubeconfig yet; run: $0 up"
    exec "$kube_bin/kubectl" --kubeconfig "$state/admin.kubeconfig" "$@"
    ;;
  *)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
