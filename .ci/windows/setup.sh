#!/bin/bash
# Copied for CI from the project's shared Windows tool (shared/windows on the development machine,
# by the upcall developers; README there), unchanged but for this note: .ci/run sets up the
# Debian trixie chroot (Rust 1.85, MinGW-w64, Wine) with setup.sh, then runs the test suite as a
# Windows program under Wine and clippy 1.85 with run.sh.
# setup.sh: prepare a Windows build-and-run environment for Rust projects on a Debian bookworm
# host, as root: a Debian trixie chroot (rustc/cargo 1.85, rust-src, MinGW-w64, Wine) in a cache
# folder, Rust's startup objects for x86_64-pc-windows-gnu, and a Wine prefix. Idempotent: a
# second run checks each step and takes seconds.
#
#   setup.sh             set up, or check and complete an existing setup
#   setup.sh --upgrade   also upgrade the chroot's packages (and refresh what depends on them)
#   setup.sh --remove    delete the cache folder
#
# Environment: UPCALL_WINDOWS_CACHE (default /var/cache/upcall-windows), UPCALL_WINDOWS_MIRROR and
# UPCALL_WINDOWS_SECURITY_MIRROR (default: the host's own Debian mirrors, from its apt sources),
# UPCALL_WINDOWS_EXTRA_PACKAGES (more trixie packages for the chroot, space-separated).
set -euo pipefail
UW_PROG=setup.sh
# shellcheck source=common.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"

SUITE=trixie
PACKAGES="cargo rustc rust-src rust-clippy gcc-mingw-w64-x86-64 wine wine64 ca-certificates procps
 ${UPCALL_WINDOWS_EXTRA_PACKAGES:-}"
STAMPS=$UW_CACHE/stamps
LOG=$UW_CACHE/setup.log
T0=$(date +%s)
MODE=${1:-}
case $MODE in
    "" | --upgrade | --remove) ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) uw_die "unknown option '$MODE' (try --help)" ;;
esac

[ "$(id -u)" = 0 ] || uw_die "run me as root (I debootstrap a chroot and mount into it)"
[ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] || uw_die "this host is not amd64"

# Is anything mounted at or below $1, in the host's view? (A run's mounts never are: they live in
# the run's own namespace. This guards against mounts made by hand.)
mounted_below() {
    awk -v r="$1" '$5 == r || index($5, r "/") == 1 {found = 1} END {exit !found}' /proc/self/mountinfo
}

if [ "$MODE" = --remove ]; then
    [ -e "$UW_CACHE" ] || { echo "nothing to remove: $UW_CACHE does not exist"; exit 0; }
    mounted_below "$UW_CACHE" && uw_die "something is mounted below $UW_CACHE; unmount it first"
    exec 9>"$UW_CACHE/.setup.lock"
    flock -n 9 || uw_die "setup.sh is running on $UW_CACHE"
    busy=
    for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/root" 2>/dev/null)" = "$UW_ROOT" ]; then busy+=" ${p#/proc/}"; fi
    done
    [ -z "$busy" ] || uw_die "processes run in the chroot (PIDs$busy); end them first"
    size=$(du -sh --one-file-system "$UW_CACHE" 2>/dev/null | cut -f1)
    rm -rf --one-file-system "$UW_CACHE"
    echo "removed $UW_CACHE ($size)"
    exit 0
fi

mkdir -p "$UW_CACHE" "$STAMPS"
exec 9>"$UW_CACHE/.setup.lock"
flock -n 9 || uw_die "another setup.sh is running on $UW_CACHE"
printf '\n##### setup.sh %s, %s\n' "${MODE:-(set up)}" "$(date '+%F %T')" >>"$LOG"

STEP=
step() { STEP=$1; STEP_T0=$(date +%s); printf '  %-50s ' "$1"; printf '\n== %s  %s\n' "$(date '+%F %T')" "$1" >>"$LOG"; }
done_() { echo "${1:-done} ($(( $(date +%s) - STEP_T0 )) s)"; }
skip() { printf '  %-50s %s\n' "$1" "${2:-ok}"; }
fail() {
    echo "FAILED"
    { echo "setup.sh: step '$STEP' failed${1:+: $1}. Last lines of $LOG:"
      tail -n 25 "$LOG" | sed 's/^/    /'; } >&2
    exit 1
}
logged() { "$@" >>"$LOG" 2>&1 </dev/null || fail; }
# A command inside the chroot (its own namespaces, /proc, /dev, DNS), output to the log.
in_chroot() { UW_I_PROJECT='' UW_I_CWD=/root UW_I_TARGET_DIR='' UW_I_HIDE=0 uw_enter "$@" >>"$LOG" 2>&1 </dev/null; }
write_if_changed() {   # write_if_changed FILE < content: 0 if FILE changed
    local new
    new=$(cat)
    if [ -f "$1" ] && [ "$(cat "$1")" = "$new" ]; then return 1; fi
    mkdir -p "$(dirname "$1")"
    printf '%s\n' "$new" >"$1"
}

echo "Windows environment in $UW_CACHE (log: $LOG)"

# ---- host tools --------------------------------------------------------------------------------
missing=
command -v debootstrap >/dev/null || missing+=" debootstrap"
command -v gpgv >/dev/null || missing+=" gpgv"
command -v pgrep >/dev/null || missing+=" procps"
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=" debian-archive-keyring"
env --default-signal=INT true 2>/dev/null || uw_die "this host's env(1) lacks --default-signal (coreutils 8.31 or later needed)"
if ! command -v unshare >/dev/null || ! command -v chroot >/dev/null; then uw_die "unshare and chroot are missing"; fi
if [ -n "$missing" ]; then
    step "host packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    if ! apt-get install -y -q --no-install-recommends $missing >>"$LOG" 2>&1 </dev/null; then
        logged apt-get update -q
        # shellcheck disable=SC2086
        logged apt-get install -y -q --no-install-recommends $missing
    fi
    done_
fi

# ---- the host's Debian mirror ------------------------------------------------------------------
# Every enabled "deb" entry of the host's apt sources, one "URI SUITE" a line (one-line and
# deb822 formats).
host_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '/^[[:space:]]*(#|$)/ {next}
             $1 == "deb" { i = 2
                 if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                 print $i, $(i + 1) }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'function flush(  n, m, a, b, u, s) {
                 if (types ~ /(^|[[:space:]])deb([[:space:]]|$)/ && enabled != "no") {
                     n = split(uris, u, /[[:space:]]+/); m = split(suites, s, /[[:space:]]+/)
                     for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) if (u[a] != "" && s[b] != "") print u[a], s[b]
                 }
                 types = uris = suites = enabled = "" }
             /^[[:space:]]*#/ {next}
             /^[[:space:]]*$/ {flush(); next}
             /^[^[:space:]]/ { key = tolower($0); sub(/:.*/, "", key); val = $0; sub(/^[^:]*:[[:space:]]*/, "", val)
                 if (key == "types") types = val; else if (key == "uris") uris = val
                 else if (key == "suites") suites = val; else if (key == "enabled") enabled = tolower(val) }
             END {flush()}' "$f"
    done
    return 0
}
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
mirror_for() {   # mirror_for SUITE: the first http(s) URI the host uses for SUITE
    host_sources | awk -v s="$1" '$2 == s && $1 ~ /^https?:\/\// && uri == "" {uri = $1; sub(/\/+$/, "", uri)}
                                  END {if (uri != "") print uri}' || true
}
MIRROR=${UPCALL_WINDOWS_MIRROR:-$(mirror_for "$codename")}
SECURITY=${UPCALL_WINDOWS_SECURITY_MIRROR:-$(mirror_for "$codename-security")}
UPDATES=$(mirror_for "$codename-updates")
[ -n "$MIRROR" ] || uw_die "found no http(s) Debian mirror for '$codename' in the host's apt sources; set UPCALL_WINDOWS_MIRROR=http://.../debian"

# ---- debootstrap -------------------------------------------------------------------------------
if [ ! -e "$STAMPS/debootstrap" ]; then
    if [ -e "$UW_ROOT" ]; then   # a broken earlier attempt: start again
        mounted_below "$UW_ROOT" && uw_die "something is mounted below $UW_ROOT; unmount it first"
        rm -rf --one-file-system "$UW_ROOT"
    fi
    avail=$(df --output=avail -k "$UW_CACHE" | tail -n 1)
    [ "$avail" -ge $((6 * 1024 * 1024)) ] || uw_die "$UW_CACHE has $((avail / 1024 / 1024)) GB free; 6 GB are needed"
    step "debootstrap $SUITE (minbase) from $MIRROR"
    # In a mount namespace of its own, so that what it mounts can never stay behind.
    logged unshare --mount --propagation private -- \
        debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$UW_ROOT" "$MIRROR"
    date >"$STAMPS/debootstrap"
    done_
else
    skip "debootstrap $SUITE (minbase)"
fi

# ---- chroot configuration ----------------------------------------------------------------------
sources="Types: deb
URIs: $MIRROR
Suites: $SUITE${UPDATES:+ $SUITE-updates}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
[ -n "$SECURITY" ] && sources+="

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
lists_stale=0
write_if_changed "$UW_ROOT/etc/apt/sources.list.d/debian.sources" <<<"$sources" && lists_stale=1
rm -f "$UW_ROOT/etc/apt/sources.list"
write_if_changed "$UW_ROOT/etc/apt/apt.conf.d/90upcall-windows" <<'EOF' || true
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
write_if_changed "$UW_ROOT/etc/dpkg/dpkg.cfg.d/90upcall-windows-nodoc" <<'EOF' || true
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
EOF
# No daemons start inside the chroot.
write_if_changed "$UW_ROOT/usr/sbin/policy-rc.d" <<<$'#!/bin/sh\nexit 101' && chmod 755 "$UW_ROOT/usr/sbin/policy-rc.d"
echo windows >"$UW_ROOT/etc/debian_chroot"
# Files that each run bind-mounts from the host (regular files, never links out of the chroot).
for f in /etc/resolv.conf /etc/hosts; do
    if [ -L "$UW_ROOT$f" ] || [ ! -f "$UW_ROOT$f" ]; then rm -f "$UW_ROOT$f"; cp "$f" "$UW_ROOT$f" 2>/dev/null || : >"$UW_ROOT$f"; fi
done
mkdir -p "$UW_ROOT/tmp/.wine-0" "$UW_ROOT$UW_IN/cargo-home" "$UW_ROOT$UW_IN/target"
chmod 700 "$UW_ROOT/tmp/.wine-0"
skip "apt sources: $SUITE${UPDATES:+, $SUITE-updates} ($MIRROR)${SECURITY:+, $SUITE-security}"

# ---- the host's CA certificates (the registry is reached through them) --------------------------
ca_src=/usr/local/share/ca-certificates
ca_dst=$UW_ROOT/usr/local/share/ca-certificates/host
ca_sum=$( { [ -d "$ca_src" ] && cd "$ca_src" && find . -name '*.crt' -type f | LC_ALL=C sort | xargs -r sha256sum; } || true)
if [ "$ca_sum" != "$(cat "$STAMPS/ca" 2>/dev/null)" ]; then
    step "CA certificates from $ca_src ($(printf '%s' "$ca_sum" | grep -c . || true))"
    rm -rf "$ca_dst"
    mkdir -p "$ca_dst"
    [ -z "$ca_sum" ] || (cd "$ca_src" && find . -name '*.crt' -type f -exec cp --parents {} "$ca_dst/" \;)
    in_chroot update-ca-certificates --fresh || fail
    printf '%s\n' "$ca_sum" >"$STAMPS/ca"
    done_
else
    skip "CA certificates from $ca_src"
fi

# ---- packages ----------------------------------------------------------------------------------
# shellcheck disable=SC2086,SC2016
pkg_status() { chroot "$UW_ROOT" dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $PACKAGES 2>/dev/null || true; }
n_wanted=$(wc -w <<<"$PACKAGES")
if [ "$MODE" = --upgrade ] || [ "$lists_stale" = 1 ] || [ "$(pkg_status | grep -c '^ii ')" -lt "$n_wanted" ]; then
    step "packages ($n_wanted): rustc, cargo, rust-src, MinGW-w64, Wine"
    in_chroot env DEBIAN_FRONTEND=noninteractive dpkg --configure -a || fail   # after an interrupted run
    in_chroot apt-get -q update || fail
    in_chroot env DEBIAN_FRONTEND=noninteractive apt-get -y -q dist-upgrade || fail
    # shellcheck disable=SC2086
    in_chroot env DEBIAN_FRONTEND=noninteractive apt-get -y -q install $PACKAGES || fail
    in_chroot apt-get clean || fail
    [ "$(pkg_status | grep -c '^ii ')" -ge "$n_wanted" ] || fail "not every package got installed"
    done_
else
    skip "packages ($n_wanted): rustc, cargo, rust-src, MinGW-w64, Wine"
fi
# shellcheck disable=SC2016
versions=$(chroot "$UW_ROOT" dpkg-query -W -f='${Package} ${Version}\n' rustc rust-src gcc-mingw-w64-x86-64 wine 2>/dev/null)

# ---- rsbegin.o / rsend.o -----------------------------------------------------------------------
# Debian ships no std for the Windows target (it is built from rust-src by cargo -Zbuild-std),
# and not the two startup objects rustc links into every windows-gnu program. Build them from
# rust-src and put them where rustc looks: the target's library folder of its sysroot.
rt_src=$UW_ROOT/usr/lib/rustlib/src/rust/library/rtstartup
rt_dst=/usr/lib/rustlib/$UW_TRIPLE/lib
if [ ! -s "$UW_ROOT$rt_dst/rsbegin.o" ] || [ ! -s "$UW_ROOT$rt_dst/rsend.o" ] \
    || [ "$rt_src/rsbegin.rs" -nt "$UW_ROOT$rt_dst/rsbegin.o" ] || [ "$rt_src/rsend.rs" -nt "$UW_ROOT$rt_dst/rsend.o" ]; then
    step "rsbegin.o, rsend.o from rust-src"
    mkdir -p "$UW_ROOT$rt_dst"
    for o in rsbegin rsend; do
        in_chroot env RUSTC_BOOTSTRAP=1 rustc --target "$UW_TRIPLE" --emit=obj -o "$rt_dst/$o.o" \
            /usr/lib/rustlib/src/rust/library/rtstartup/$o.rs || fail
    done
    done_
else
    skip "rsbegin.o, rsend.o from rust-src"
fi

# ---- Wine prefix -------------------------------------------------------------------------------
prefix=$UW_ROOT$UW_IN/wineprefix
if [ ! -s "$prefix/system.reg" ] || [ ! -e "$prefix/.update-timestamp" ] || [ "$MODE" = --upgrade ]; then
    step "Wine prefix (64-bit) in $UW_IN/wineprefix"
    if [ -s "$prefix/system.reg" ]; then how=--update; else how=--init; fi
    in_chroot bash -c "wineboot $how && wineserver -w" || fail
    [ -s "$prefix/system.reg" ] || fail "wineboot made no prefix"
    done_
else
    skip "Wine prefix (64-bit) in $UW_IN/wineprefix"
fi

# ---- check: a std-only program, built for Windows and run under Wine ----------------------------
if [ "$versions" != "$(cat "$STAMPS/check" 2>/dev/null)" ]; then
    step "check: build std for Windows, run a program"
    check=$UW_ROOT$UW_IN/check
    rm -rf "$check"
    mkdir -p "$check/src"
    printf '[package]\nname = "check"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n' >"$check/Cargo.toml"
    cat >"$check/src/main.rs" <<'EOF'
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut bytes = [0u8; 5];
        listener.accept().unwrap().0.read_exact(&mut bytes).unwrap();
        bytes
    });
    TcpStream::connect(address).unwrap().write_all(b"hello").unwrap();
    let bytes = server.join().unwrap();
    println!("{} {}", std::env::consts::OS, String::from_utf8_lossy(&bytes));
}
EOF
    out=$UW_CACHE/check.out
    UW_I_PROJECT='' UW_I_CWD=$UW_IN/check UW_I_TARGET_DIR=$UW_IN/target/_check UW_I_HIDE=0 \
        uw_enter cargo run -q -Zbuild-std --target "$UW_TRIPLE" >"$out" 2>>"$LOG" </dev/null || { cat "$out" >>"$LOG"; fail; }
    cat "$out" >>"$LOG"
    [ "$(tr -d '\r' <"$out")" = "windows hello" ] || fail "the program printed '$(tr -d '\r' <"$out" | head -c 200)', not 'windows hello'"
    rm -rf "$UW_ROOT$UW_IN/target/_check" "$check" "$out"
    printf '%s\n' "$versions" >"$STAMPS/check"
    done_ "ok"
else
    skip "check: build std for Windows, run a program"
fi

printf '%s\n' "$versions" >"$UW_READY"
echo "ready in $(( $(date +%s) - T0 )) s; $(du -sh --one-file-system "$UW_CACHE" 2>/dev/null | cut -f1) in $UW_CACHE"
tr '\n' ';' <<<"$versions" | sed 's/;$//; s/;/, /g'
echo
echo "next: cd YOUR-PROJECT && $UW_HERE/run.sh build"
