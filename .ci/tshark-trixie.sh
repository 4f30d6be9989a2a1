#!/usr/bin/env bash
# tests/tshark.rs on Debian trixie's tshark 4.4 (Lua 5.4), beside this system's 4.0 (Lua 5.2).
#
# Wireshark 4.2 changed two things a dissector meets: Lua 5.4 instead of 5.2, and no Lua at all
# for root (no personal plugins, no -X lua_script:). The tests run tshark as `nobody` when root;
# this step checks that they pass on 4.4 too, with tshark from a minimal trixie tree made by
# debootstrap and kept in a cache (cold: about a minute; warm: the tests alone, about 20 s here),
# or from the trixie tree UPCALL_TSHARK_TRIXIE_ROOT names.
# The tree's /tmp is this system's /tmp (a bind mount in a mount namespace of its own, gone when
# the step ends), so tshark inside finds the captures the tests write.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${UPCALL_TSHARK_TRIXIE:-/var/cache/upcall-tshark-trixie}
root=$cache/rootfs
# UPCALL_TSHARK_TRIXIE_ROOT: a trixie tree that has tshark already, used as it is (CI gives the
# Windows build's chroot, which .ci/windows/setup.sh made with tshark in it: one debootstrap less).
if [ -n "${UPCALL_TSHARK_TRIXIE_ROOT:-}" ]; then
    root=$UPCALL_TSHARK_TRIXIE_ROOT
    [ -x "$root/usr/bin/tshark" ] || { echo "no tshark in $root (UPCALL_TSHARK_TRIXIE_ROOT)" >&2; exit 1; }
    grep -qx 'VERSION_CODENAME=trixie' "$root/etc/os-release" \
        || { echo "$root is not Debian trixie (UPCALL_TSHARK_TRIXIE_ROOT)" >&2; exit 1; }
fi

# The Debian mirror this system's apt already uses (deb822 or one-line sources).
mirror() {
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -v -e security -e '^$' | head -n 1 || true)
    if [ -z "$uri" ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
    fi
    [ -n "$uri" ] || { echo "no Debian mirror in /etc/apt/sources*: cannot make the trixie tree" >&2; exit 1; }
    echo "$uri"
}

if ! [ -x "$root/usr/bin/tshark" ]; then
    command -v debootstrap >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    }
    started=$(date +%s)
    rm -rf "$root.partial"
    mkdir -p "$cache"
    debootstrap --variant=minbase --include=tshark trixie "$root.partial" "$(mirror)" >"$cache/debootstrap.log" 2>&1 \
        || { tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
    mv "$root.partial" "$root"
    echo "trixie tree with tshark made in $(( $(date +%s) - started )) s"
fi
chroot "$root" tshark --version | sed -n 1p

cargo test --no-run --test tshark -q
unshare --mount --propagation private sh -c '
    mount --bind /tmp "$1/tmp"
    UPCALL_TSHARK_ROOT="$1" cargo test --test tshark -- --include-ignored
' sh "$root"
