#!/usr/bin/env bash
# Runs the whole test suite, the end-to-end suites included (they are ordinary tests).
#
# The e2e suites (tests/e2e_*.rs) start the real peers as child processes: docker-registry
# 2.8, skopeo 1.9, nginx 1.22 (with auth_request), htpasswd; systemd-analyze is there for
# checks of the shipped systemd units; dpkg-dev and binutils build the Debian package in
# tests/package.rs; Go and go-jose check `regauth jwks` in tests/jwks.rs. Missing Debian
# packages are installed first (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

# command that must exist -> Debian package that provides it
declare -A needs=(
    [docker-registry]=docker-registry
    [skopeo]=skopeo
    [nginx]=nginx
    [htpasswd]=apache2-utils
    [systemd-analyze]=systemd
    [containerd]=containerd
    [ctr]=containerd
    [podman]=podman
    [dockerd]=docker.io
    [dpkg-shlibdeps]=dpkg-dev
    [strip]=binutils
    [go]=golang-go
    [caddy]=caddy
)

# file that must exist -> Debian package that provides it
declare -A need_files=(
    # go-jose, the JOSE library of registry 3, for tests/jose (tests/jwks.rs)
    [/usr/share/gocode/src/gopkg.in/square/go-jose.v2/jwk.go]=golang-gopkg-square-go-jose.v2-dev
)

missing=()
for cmd in "${!needs[@]}"; do
    if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1; then
        missing+=("${needs[$cmd]}")
    fi
done
for file in "${!need_files[@]}"; do
    [[ -e $file ]] || missing+=("${need_files[$file]}")
done

if ((${#missing[@]})); then
    echo "tests/run.sh: installing ${missing[*]}" >&2
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The e2e tests start their own registry, regauth and nginx on random loopback ports.
cargo test --locked
