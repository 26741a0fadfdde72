#!/usr/bin/env bash
# Installs what windlass's demo and tests need and the machine lacks:
# Debian packages through apt-get, a Go toolchain recent enough for the
# pinned Kubernetes (through the Go module proxy when the system Go is too
# old), and the Rust components fmt and clippy. Idempotent and quiet when
# everything is there.
set -euo pipefail

cache=${WINDLASS_CACHE:-$HOME/.cache/windlass}
go_version=1.26.8 # the toolchain fetched when no Go >= 1.21 is installed

log() { printf 'prerequisites: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# command -> Debian package that provides it
declare -A packages=(
  [openssl]=openssl
  [python3]=python3
  [git]=git
  [flock]=util-linux
  [setsid]=util-linux
  [cc]=gcc
  [pkg-config]=pkg-config
  # git's own servers for the source tests: git daemon and git http-backend
  # come with git; OpenSSH's sshd and ssh-keygen are separate packages.
  [/usr/sbin/sshd]=openssh-server
  [ssh-keygen]=openssh-client
)

missing=()
for command in "${!packages[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${packages[$command]}")
done
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev) # git2's https and ssh
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  command -v apt-get >/dev/null 2>&1 ||
    die "missing ${missing[*]} and there is no apt-get here to install them"
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  # policy-rc.d 101: do not start system services (sshd) while installing.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee $policy >/dev/null
    as_root chmod +x $policy
    trap 'as_root rm -f '$policy EXIT
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# Go: any Go >= 1.21 fetches the exact toolchain the wrapper modules ask for
# (GOTOOLCHAIN=auto). Older or missing Go: bring Go from the module proxy's
# golang.org/toolchain module and put it first on PATH.
go_minor() { go version 2>/dev/null | sed -nE 's/^go version go1\.([0-9]+).*/\1/p'; }
if ! command -v go >/dev/null 2>&1; then
  log "installing Debian's golang-go to bootstrap a recent Go"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    golang-go >/dev/null
fi
if [ "$(go_minor)" -lt 21 ] 2>/dev/null || [ -z "$(go_minor)" ]; then
  goroot=$cache/go/go$go_version
  if [ ! -x "$goroot/bin/go" ]; then
    log "fetching Go $go_version from the Go module proxy (system Go: $(go version))"
    module=golang.org/toolchain@v0.0.1-go$go_version.linux-$(dpkg --print-architecture)
    dir=$(cd /tmp && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "$module" |
      sed -nE 's/^\s*"Dir": "(.*)",?$/\1/p')
    [ -n "$dir" ] || die "could not download $module"
    rm -rf "$goroot.tmp" && mkdir -p "$(dirname "$goroot")"
    cp -r "$dir" "$goroot.tmp" && chmod -R u+w "$goroot.tmp"
    chmod +x "$goroot.tmp"/bin/* "$goroot.tmp"/pkg/tool/*/*
    mv "$goroot.tmp" "$goroot"
  fi
  as_root ln -sf "$goroot/bin/go" /usr/local/bin/go
  hash -r
  [ "$(go_minor)" -ge 21 ] || die "/usr/local/bin/go is not first on PATH; put it before $(command -v go)"
fi

# Rust: the toolchain itself comes from rustup (Debian's is too old for
# edition 2024); fmt and clippy are part of the test command.
command -v cargo >/dev/null 2>&1 ||
  die "Rust is not installed; install it with rustup (Rust 1.89 or newer)"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  command -v rustup >/dev/null 2>&1 || die "cargo fmt and cargo clippy are missing and there is no rustup"
  log "adding the rustfmt and clippy components"
  rustup component add rustfmt clippy
fi
