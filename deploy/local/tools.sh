#!/usr/bin/env bash
# The external renderers windlass runs, kustomize and helm, built from Go
# modules pinned in wrapper modules (deploy/local/kustomize, deploy/local/helm)
# into the windlass cache, the way control-plane.sh builds Kubernetes.
#
#   tools.sh build   build what is missing (cached per pin), link both into
#                    the tools directory; prints the two binaries' paths
#   tools.sh path    print the tools directory (put it on PATH)
#   tools.sh env     print WINDLASS_KUSTOMIZE_BIN=... and WINDLASS_HELM_BIN=...
#                    for the binaries that are built
#
# Environment:
#   WINDLASS_CACHE   binary cache (default ~/.cache/windlass); the tools
#                    directory is $WINDLASS_CACHE/tools, where windlass
#                    looks when neither the flags, the env vars nor PATH
#                    name a binary
#
# Only the Go module proxy is used (GOPROXY as configured); no prebuilt
# binary is downloaded.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${WINDLASS_CACHE:-$HOME/.cache/windlass}
tools_dir=$cache/tools

log() { printf 'tools: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The pinned version of a wrapper module's main dependency, read from its go.mod.
pinned_version() { # module-dir dependency
  awk -v dep="$2" '$1 == "require" && $2 == dep { print $3 } $1 == dep { print $2; exit }' \
    "$here/$1/go.mod" | head -n 1
}

kustomize_version=$(pinned_version kustomize sigs.k8s.io/kustomize/kustomize/v5)
helm_version=$(pinned_version helm helm.sh/helm/v4)

# Binaries live in a directory named after the pin and a hash of the wrapper
# sources, so they are rebuilt exactly when the pin (or the wrapper) changes.
bin_dir() { # module-dir version
  local sum
  sum=$(cd "$here/$1" && find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort |
    xargs sha256sum | sha256sum | cut -c1-12)
  printf '%s/bin/%s-%s-%s' "$cache" "$1" "$2" "$sum"
}

kustomize_bin=$(bin_dir kustomize "$kustomize_version")
helm_bin=$(bin_dir helm "$helm_version")

require_go() {
  command -v go >/dev/null 2>&1 ||
    die "Go is not installed; install Go 1.26 or newer (deploy/local/prerequisites.sh does this)"
}

# Builds one Go package of a wrapper module into target-dir/name, unless a
# complete build is there. CGO is off: static binaries, as upstream ships.
build_tool() { # module-dir package name target-dir ldflags
  local dir=$1 package=$2 name=$3 target=$4 ldflags=$5
  [ -x "$target/.complete" ] && return 0
  require_go
  mkdir -p "$cache/bin"
  local tmp
  tmp=$(mktemp -d "$cache/bin/.build.XXXXXX")
  log "building $name ($(basename "$target")); a cold build takes a few minutes"
  local started=$SECONDS
  (cd "$here/$dir" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$ldflags" \
    -o "$tmp/$name" "$package") ||
    { rm -rf "$tmp"; die "building $name failed (see the Go errors above)"; }
  printf '#!/bin/sh\n# built in %ss\n' "$((SECONDS - started))" >"$tmp/.complete"
  chmod +x "$tmp/.complete"
  rm -rf "$target"
  mv "$tmp" "$target"
  log "built $name $(basename "$target") in $((SECONDS - started))s"
}

# Points tools_dir/name at the pinned build (a relative symlink, replaced
# atomically so a running windlass never sees it missing).
link_tool() { # name target-dir
  mkdir -p "$tools_dir"
  ln -sfn "../bin/$(basename "$2")/$1" "$tools_dir/.$1.new"
  mv -T "$tools_dir/.$1.new" "$tools_dir/$1"
}

build() {
  mkdir -p "$cache"
  exec 8>"$cache/tools.lock"
  flock 8
  build_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 kustomize "$kustomize_bin" "-s -w"
  local helm_ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version"
  helm_ldflags="$helm_ldflags -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
  build_tool helm helm.sh/helm/v4/cmd/helm helm "$helm_bin" "$helm_ldflags"
  link_tool kustomize "$kustomize_bin"
  link_tool helm "$helm_bin"
  exec 8>&-
  echo "$kustomize_bin/kustomize"
  echo "$helm_bin/helm"
}

env_lines() {
  [ -x "$kustomize_bin/.complete" ] && echo "WINDLASS_KUSTOMIZE_BIN=$kustomize_bin/kustomize"
  [ -x "$helm_bin/.complete" ] && echo "WINDLASS_HELM_BIN=$helm_bin/helm"
  return 0
}

case "${1:-}" in
  build) build ;;
  path) echo "$tools_dir" ;;
  env) env_lines ;;
  *)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
