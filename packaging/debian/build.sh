#!/usr/bin/env bash
# Builds regauth's Debian package with dpkg-deb from a staged tree: no cargo-deb, no
# debhelper, nothing beyond dpkg-dev and binutils (both on any machine that builds Rust).
#
#   cargo build --release --locked
#   bash packaging/debian/build.sh                 # -> target/debian/regauth_<version>-1_<arch>.deb
#
# Options:
#   --binary PATH        the regauth binary to package (default target/release/regauth);
#                        it is stripped on the way in, the input is left as it is
#   --output DIR         where the .deb goes (default target/debian)
#   --compression KIND   xz (default), gzip or none; tests use none for speed
# Prints the path of the package it wrote.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"

binary="$top/target/release/regauth"
output="$top/target/debian"
compression=xz
while (($#)); do
    case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --output) output="$2"; shift 2 ;;
    --compression) compression="$2"; shift 2 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [[ ! -x $binary ]]; then
    echo "build.sh: no binary at $binary; run 'cargo build --release --locked' first" >&2
    exit 1
fi

# The version is Cargo's; -1 is the Debian revision of this packaging.
version="$(sed -n '/^\[package\]/,/^\[/ s/^version = "\(.*\)"$/\1/p' "$top/Cargo.toml")"
[[ -n $version ]] || { echo "build.sh: no version in Cargo.toml" >&2; exit 1; }
arch="$(dpkg --print-architecture)"
# Who answers for this build; set DEB_MAINTAINER="Name <address>" for a real one.
maintainer="${DEB_MAINTAINER:-regauth developers <regauth@example.org>}"
debversion="$version-1"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
stage="$work/regauth"

# Files, with the modes they get on the target (dpkg-deb --root-owner-group makes every
# entry root:root; postinst hands /etc/regauth to the regauth group).
put() { install -D -m "$1" "$2" "$stage/$3"; }

install -d -m 0755 "$stage/usr/bin"
strip --strip-unneeded -o "$stage/usr/bin/regauth" "$binary"
chmod 0755 "$stage/usr/bin/regauth"

# The units from systemd/, with ExecStart where Debian puts the binary.
for unit in regauth.service regauth.socket; do
    install -d -m 0755 "$stage/usr/lib/systemd/system"
    sed -e 's|/usr/local/bin/regauth|/usr/bin/regauth|g' \
        -e '1i # Installed by the regauth Debian package: the binary is /usr/bin/regauth, and postinst\n# has made the regauth user, /etc/regauth (root:regauth) and a first signing key.\n#' \
        "$top/systemd/$unit" >"$stage/usr/lib/systemd/system/$unit"
    chmod 0644 "$stage/usr/lib/systemd/system/$unit"
done
put 0644 "$here/sysusers.conf" usr/lib/sysusers.d/regauth.conf
put 0644 "$here/tmpfiles.conf" usr/lib/tmpfiles.d/regauth.conf

# Configuration (conffiles): the systemd example config and the nginx includes, at the
# paths the shipped nginx sites include them from.
install -d -m 0750 "$stage/etc/regauth" "$stage/etc/regauth/keys"
put 0640 "$top/config/regauth.systemd.json" etc/regauth/regauth.json
for snippet in "$top"/nginx/regauth-*.conf; do
    put 0644 "$snippet" "etc/nginx/regauth/$(basename "$snippet")"
done

# Documentation and examples.
doc=usr/share/doc/regauth
put 0644 "$top/README.md" "$doc/README.md"
put 0644 "$top/docs/operations.md" "$doc/operations.md"
for site in registry.conf pulp.conf; do
    put 0644 "$top/nginx/$site" "$doc/examples/nginx/$site"
done
for example in "$top"/config/examples/*.json; do
    put 0644 "$example" "$doc/examples/config/$(basename "$example")"
done
cat >"$stage/$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: regauth

Files: *
Copyright: 2026 regauth developers
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
chmod 0644 "$stage/$doc/copyright"
printf 'regauth (%s) unstable; urgency=medium\n\n  * Built from the regauth source tree.\n\n -- %s  %s\n' \
    "$debversion" "$maintainer" \
    "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")" |
    gzip -9n >"$stage/$doc/changelog.Debian.gz"
chmod 0644 "$stage/$doc/changelog.Debian.gz"
put 0644 "$here/lintian-overrides" usr/share/lintian/overrides/regauth

# Shared-library dependencies, the way dpkg-shlibdeps computes them for any package.
mkdir -p "$work/src/debian"
printf 'Source: regauth\n\nPackage: regauth\nArchitecture: any\n' >"$work/src/debian/control"
shlibs="$(cd "$work/src" && dpkg-shlibdeps -O "$stage/usr/bin/regauth" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')"
[[ -n $shlibs ]] || { echo "build.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

install -d -m 0755 "$stage/DEBIAN"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$stage/DEBIAN/$script"
done
(cd "$stage" && find etc -type f -printf '/%p\n' | sort) >"$stage/DEBIAN/conffiles"
installed_size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: regauth
Version: $debversion
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $shlibs, adduser
Suggests: nginx
Section: net
Priority: optional
Description: token server and nginx auth_request sidecar for container registries
 regauth guards private container registries (Docker Distribution 2.x and
 3.x, Pulp, anything that speaks /v2/). It issues the signed tokens of the
 Distribution token authentication spec and answers nginx auth_request
 subrequests for each registry request, from htpasswd users and an ordered
 access list.
 .
 This package ships the binary, socket-activated systemd units (not
 enabled by default), nginx includes in /etc/nginx/regauth/ and an example
 configuration in /etc/regauth/.
CONTROL

mkdir -p "$output"
deb="$output/regauth_${debversion}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compression" --build "$stage" "$deb" >/dev/null
echo "$deb"
