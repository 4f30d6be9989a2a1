#!/bin/bash
# Copied for CI from the project's shared Windows tool (shared/windows on the development machine,
# by the upcall developers; README there), unchanged but for this note: .ci/run sets up the
# Debian trixie chroot (Rust 1.85, MinGW-w64, Wine) with setup.sh, then runs the test suite as a
# Windows program under Wine and clippy 1.85 with run.sh.
# common.sh: what setup.sh and run.sh share. Sourced, it gives the settings and uw_enter.
# Executed (`common.sh __inner COMMAND...`, started by uw_enter through unshare), it is the
# first process of a run's own mount and PID namespaces: it mounts what the chroot needs,
# runs COMMAND inside it, then ends every process of the run and unmounts, whatever happened.

# ---- settings ------------------------------------------------------------------------------------
# shellcheck disable=SC2034  # (used by setup.sh and run.sh)
UW_CACHE=${UPCALL_WINDOWS_CACHE:-/var/cache/upcall-windows}
UW_CACHE=${UW_CACHE%/}
UW_ROOT=$UW_CACHE/root                 # the Debian trixie chroot
UW_IN=/opt/upcall-windows              # inside the chroot: cargo-home/, target/, wineprefix/
UW_TRIPLE=x86_64-pc-windows-gnu
UW_READY=$UW_CACHE/ready               # written by setup.sh when everything is in place
UW_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# Files a Windows machine does not have, hidden (read as empty) by run.sh --no-linux-files.
UW_LINUX_FILES="/etc/hostname /proc/sys/kernel/hostname /proc/sys/vm/max_map_count"
# Host variables handed to the command inside the chroot when they are set.
UW_PASS_ENV="TERM COLORTERM NO_COLOR COLUMNS LINES CI RUST_BACKTRACE RUST_LIB_BACKTRACE RUST_LOG
 RUST_TEST_THREADS RUST_TEST_NOCAPTURE RUST_MIN_STACK CARGO_TERM_COLOR CARGO_TERM_VERBOSE
 CARGO_TERM_QUIET CARGO_BUILD_JOBS CARGO_INCREMENTAL RUSTFLAGS RUSTDOCFLAGS WINEDEBUG
 http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY"

uw_die() { printf '%s: %s\n' "${UW_PROG:-upcall-windows}" "$*" >&2; exit 1; }

# The environment of every command in the chroot: a clean one, plus the Windows toolchain.
uw_chroot_env() {
    UW_ENV=(
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        HOME=/root USER=root LOGNAME=root SHELL=/bin/bash LANG=C.UTF-8 TERM=dumb
        debian_chroot=windows
        "CARGO_HOME=$UW_IN/cargo-home"
        # Cargo's -Z flags (here -Zbuild-std) need it on Debian's stable toolchain.
        RUSTC_BOOTSTRAP=1
        CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
        # `cargo test` and `cargo run` for the Windows target run the .exe under Wine.
        CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
        "WINEPREFIX=$UW_IN/wineprefix" WINEARCH=win64 WINEDEBUG=-all
        XDG_RUNTIME_DIR=/run/user/0
        # No Mono/Gecko download prompts, no desktop menu entries.
        "WINEDLLOVERRIDES=mscoree,mshtml=;winemenubuilder.exe=d"
    )
    [ -n "${UW_I_TARGET_DIR:-}" ] && UW_ENV+=("CARGO_TARGET_DIR=$UW_I_TARGET_DIR")
    local name
    for name in $UW_PASS_ENV ${UPCALL_WINDOWS_PASS_ENV:-}; do
        [ -n "${!name+set}" ] && UW_ENV+=("$name=${!name}")
    done
    return 0
}

# ---- the outer side (the caller's process) -------------------------------------------------------
# uw_enter COMMAND... : run COMMAND in the chroot, in its own mount and PID namespaces, and return
# its exit status. The caller sets UW_I_PROJECT (host folder to bind-mount at the same path, or
# empty), UW_I_CWD (folder inside the chroot), UW_I_TARGET_DIR (CARGO_TARGET_DIR or empty) and
# UW_I_HIDE (1: hide the Linux files). Nothing it mounts is ever visible outside the run, and when
# the run's first process ends the kernel ends every other process of the run.
uw_enter() {
    local ign int_default=1 upid st
    local -a reset=()
    # A caller that ignores Ctrl-C (a background job of a script) keeps ignoring it; otherwise
    # the command gets the default SIGINT back, which bash takes away from background jobs.
    ign=$(awk '/^SigIgn:/ {print $2}' "/proc/$$/status")
    # shellcheck disable=SC2054
    if (( 0x$ign & 2 )); then int_default=0; else reset=(env --default-signal=INT,QUIT); fi
    export UW_I_PROJECT="${UW_I_PROJECT:-}" UW_I_CWD="${UW_I_CWD:-/root}" \
        UW_I_TARGET_DIR="${UW_I_TARGET_DIR:-}" UW_I_HIDE="${UW_I_HIDE:-0}" \
        UW_I_INT_DEFAULT=$int_default UW_PROG="${UW_PROG:-upcall-windows}" UPCALL_WINDOWS_CACHE="$UW_CACHE"
    UW_SIG=
    UW_TERMS=0
    { exec 3<&0; } 2>/dev/null || exec 3</dev/null   # (stdin may be closed)
    "${reset[@]}" unshare --mount --propagation private --pid --fork --kill-child -- \
        /bin/bash "$UW_HERE/common.sh" __inner "$@" <&3 3<&- &
    upid=$!
    exec 3<&-
    # Ctrl-C reaches the command through the terminal; here it only must not end us first.
    trap '' INT
    # A TERM or HUP sent to us is passed on (the second one ends the run at once).
    trap 'UW_SIG=1; uw_pass_on "$upid"' TERM HUP
    uw_wait "$upid"; st=$?
    # (bash may lose the status of a child that ends while a trap runs)
    if [ "$UW_TERMS" -gt 0 ] && { [ "$st" = 127 ] || [ "$st" = 255 ]; }; then st=143; fi
    trap - INT TERM HUP
    return "$st"
}

uw_pass_on() {
    local first
    UW_TERMS=$((UW_TERMS + 1))
    first=$(pgrep -P "$1" | head -n 1) || return 0
    if [ "$UW_TERMS" -ge 2 ]; then kill -KILL "$first" 2>/dev/null; else kill -TERM "$first" 2>/dev/null; fi
    return 0
}

# uw_wait PID: wait until PID has ended, through any trapped signals, and return its status.
uw_wait() {
    local st
    while :; do
        UW_SIG=
        wait "$1" && st=0 || st=$?
        [ -n "$UW_SIG" ] || return "$st"
    done
}

# ---- the inner side (PID 1 of the run's namespaces, still seeing the host's file system) -------
uw_mount() {   # uw_mount [mount options...] TARGET: mount, and remember TARGET for the unmounting
    local target=${*: -1}
    mount "$@" 2>/dev/null || { echo "${UW_PROG}: cannot mount $target" >&2; exit 1; }
    UW_MOUNTS+=("$target")
}

uw_inner_cleanup() {
    local st=$? i
    trap '' INT TERM HUP
    # Processes started under Wine end with the command: stop this run's wineserver (its socket
    # lives in this run's own /tmp/.wine-0), which ends every Windows process it serves.
    if compgen -G "$UW_ROOT/tmp/.wine-0/server-*/socket" >/dev/null; then
        timeout 20 chroot "$UW_ROOT" /usr/bin/env -i "${UW_ENV[@]}" wineserver -k >/dev/null 2>&1
        timeout 10 chroot "$UW_ROOT" /usr/bin/env -i "${UW_ENV[@]}" wineserver -w >/dev/null 2>&1
    fi
    # Anything else the command left behind (we are PID 1: -1 is every other process of the run).
    [ "$$" = 1 ] && kill -KILL -1 2>/dev/null
    wait 2>/dev/null
    for (( i = ${#UW_MOUNTS[@]} - 1; i >= 0; i-- )); do
        umount "${UW_MOUNTS[i]}" 2>/dev/null || umount -l "${UW_MOUNTS[i]}" 2>/dev/null
    done
    exit "$st"
}

uw_inner() {
    set -u
    # Only ever as the first process of fresh PID and mount namespaces: `kill -1` below must reach
    # this run's processes alone, and the mounts must vanish with the run.
    if [ "$$" != 1 ] || [ "$(readlink /proc/self/ns/mnt)" = "$(readlink /proc/1/ns/mnt)" ]; then
        echo "${UW_PROG:-common.sh}: __inner runs only through uw_enter" >&2
        exit 1
    fi
    UW_MOUNTS=()
    UW_INTS=0
    uw_chroot_env
    trap uw_inner_cleanup EXIT
    # The terminal's Ctrl-C goes to the command too. A second one stops every process of the run,
    # a third kills them.
    UW_LAST_SIGNAL_STATUS=255
    trap 'UW_SIG=1; UW_LAST_SIGNAL_STATUS=130; UW_INTS=$((UW_INTS + 1))
          [ "$UW_INTS" -eq 2 ] && kill -TERM -1 2>/dev/null
          [ "$UW_INTS" -ge 3 ] && kill -KILL -1 2>/dev/null' INT
    trap 'UW_SIG=1; UW_LAST_SIGNAL_STATUS=143; kill -TERM -1 2>/dev/null' TERM HUP
    local r=$UW_ROOT f
    [ -d "$r/proc" ] && [ -x "$r/bin/bash" ] || { echo "${UW_PROG}: no chroot at $r" >&2; exit 1; }
    mkdir -p "$r/tmp/.wine-0" "$r/run/user/0" "$r/dev/pts" "$r/dev/shm"
    uw_mount -t proc -o nosuid,nodev,noexec proc "$r/proc"          # this run's own processes
    uw_mount --bind /dev "$r/dev"
    uw_mount --bind /dev/pts "$r/dev/pts"
    uw_mount --bind /dev/shm "$r/dev/shm"
    uw_mount -t tmpfs -o mode=0700 tmpfs "$r/tmp/.wine-0"            # this run's own wineserver
    uw_mount -t tmpfs -o mode=0700 tmpfs "$r/run/user/0"             # and XDG_RUNTIME_DIR
    for f in /etc/resolv.conf /etc/hosts; do                          # names resolve as on the host
        if [ -f "$f" ] && [ -f "$r$f" ] && [ ! -L "$r$f" ]; then
            uw_mount --bind -o ro "$f" "$r$f"
        fi
    done
    if [ -n "$UW_I_PROJECT" ]; then
        mkdir -p "$r$UW_I_PROJECT"
        uw_mount --bind "$UW_I_PROJECT" "$r$UW_I_PROJECT"
    fi
    if [ "$UW_I_HIDE" = 1 ]; then
        for f in $UW_LINUX_FILES ${UPCALL_WINDOWS_HIDE:-}; do
            if [ -f "$r$f" ] && [ ! -L "$r$f" ]; then uw_mount --bind /dev/null "$r$f"; fi
        done
    fi
    local -a reset=()
    # shellcheck disable=SC2054
    [ "$UW_I_INT_DEFAULT" = 1 ] && reset=(env --default-signal=INT,QUIT)
    # Inside the chroot a small shell runs the command and writes down how it ended: bash may
    # lose the status of a child that ends while a trap runs (Ctrl-C), the file does not.
    local status_file=/run/user/0/.upcall-windows-status st cpid
    # shellcheck disable=SC2016
    local wrapper='trap : INT; cd -- "$1" || exit 1; f=$2; shift 2
        if ! command -v -- "$1" >/dev/null; then echo "run.sh: $1: no such command in the chroot" >&2; st=127
        else "$@"; st=$?; fi
        echo "$st" >"$f"; exit "$st"'
    { exec 3<&0; } 2>/dev/null || exec 3</dev/null   # (stdin may be closed)
    "${reset[@]}" chroot "$r" /usr/bin/env -i "${UW_ENV[@]}" \
        /bin/bash -c "$wrapper" run.sh "$UW_I_CWD" "$status_file" "$@" <&3 3<&- &
    cpid=$!
    exec 3<&-
    uw_wait "$cpid"; st=$?
    if [ -s "$r$status_file" ]; then
        st=$(cat "$r$status_file")
    elif [ "$st" = 127 ] || [ "$st" = 255 ]; then
        st=$UW_LAST_SIGNAL_STATUS
    fi
    exit "$st"
}

if [ "${BASH_SOURCE[0]}" = "$0" ] && [ "${1:-}" = __inner ]; then
    shift
    uw_inner "$@"
fi
