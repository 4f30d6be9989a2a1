#!/bin/bash
# Copied for CI from the project's shared Windows tool (shared/windows on the development machine,
# by the upcall developers; README there), unchanged but for this note: .ci/run sets up the
# Debian trixie chroot (Rust 1.85, MinGW-w64, Wine) with setup.sh, then runs the test suite as a
# Windows program under Wine and clippy 1.85 with run.sh.
# run.sh: build, test and run a Rust project as a Windows program, under Wine, in the chroot that
# setup.sh made. Run it as root from the project's root (the folder with Cargo.toml):
#
#   run.sh build [ARGS]        cargo build --release --bins for x86_64-pc-windows-gnu
#   run.sh test [ARGS]         cargo test for x86_64-pc-windows-gnu; the tests run under Wine
#   run.sh exe NAME [ARGS]     run target/.../release/NAME.exe under Wine (after run.sh build)
#   run.sh --no-console exe NAME [ARGS]   the same with stdin and stdout as pipes: the terminal,
#                              not Wine's console, shows what is typed (readable in tmux)
#   run.sh shell               a shell in the chroot, in the project, with the same environment
#   run.sh [--] COMMAND...     any command in the chroot, in the project, e.g.
#                              run.sh -- cargo clippy --target x86_64-pc-windows-gnu -Zbuild-std
#
# Options (before the command): --no-linux-files hides files a Windows machine does not have
# (/etc/hostname, /proc/sys/kernel/hostname, /proc/sys/vm/max_map_count and UPCALL_WINDOWS_HIDE):
# they read as empty. The project is bind-mounted at its own path; cargo's home and target folder
# live in the cache (UPCALL_WINDOWS_CACHE, default /var/cache/upcall-windows), never in the
# project's target/. Each run has its own mount and PID namespaces and its own wineserver: when
# the command ends, every process it started ends and everything mounted for it goes away.
set -euo pipefail
UW_PROG=run.sh
# shellcheck source=common.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

hide=0
raw=0
noconsole=0
while [ $# -gt 0 ]; do
    case $1 in
        --no-linux-files) hide=1; shift ;;
        --no-console) noconsole=1; shift ;;
        -h | --help) usage; exit 0 ;;
        --) raw=1; shift; break ;;
        -*) uw_die "unknown option '$1' (try --help)" ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { usage >&2; exit 2; }

[ "$(id -u)" = 0 ] || uw_die "run me as root (I chroot and mount)"
[ -e "$UW_READY" ] || uw_die "no Windows environment in $UW_CACHE yet: run $UW_HERE/setup.sh first"
[ -f Cargo.toml ] || uw_die "no Cargo.toml here: run me from the project's root"

project=$(pwd -P)
case $project/ in
    "$UW_CACHE"/*) uw_die "the project is inside the cache folder $UW_CACHE" ;;
esac
# The project appears in the chroot at its own path: that path must be free there, and no part
# of it a link (a link could lead out of the chroot).
p=
IFS=/ read -ra parts <<<"${project#/}"
for part in "${parts[@]}"; do
    p+=/$part
    [ -L "$UW_ROOT$p" ] && uw_die "the project's path $project crosses a link in the chroot ($p); move the project"
done
if [ -d "$UW_ROOT$project" ] && [ -n "$(ls -A "$UW_ROOT$project" 2>/dev/null)" ]; then
    uw_die "$project is a folder of the chroot itself; move the project"
fi
key=$(basename "$project")-$(printf '%s' "$project" | sha256sum | cut -c1-8)
target_dir=$UW_IN/target/$key
host_release=$UW_ROOT$target_dir/$UW_TRIPLE/release

export UW_I_PROJECT=$project UW_I_CWD=$project UW_I_TARGET_DIR=$target_dir UW_I_HIDE=$hide
if [ "$hide" = 1 ]; then
    # shellcheck disable=SC2086
    echo "run.sh: --no-linux-files: these read as empty:" $UW_LINUX_FILES ${UPCALL_WINDOWS_HIDE:-} >&2
fi

cmd=$1
[ "$raw" = 1 ] && cmd=--
[ "$noconsole" = 1 ] && [ "$cmd" != exe ] && uw_die "--no-console goes with run.sh exe"
case $cmd in
    build)
        shift
        st=0
        uw_enter cargo build --release --bins --target "$UW_TRIPLE" -Zbuild-std "$@" || st=$?
        if [ "$st" = 0 ]; then
            echo "Windows programs (on this machine):"
            find "$host_release" -maxdepth 1 -name '*.exe' -printf '  %p  (%s bytes)\n' | sort
        fi
        exit "$st"
        ;;
    test)
        shift
        st=0
        uw_enter cargo test --target "$UW_TRIPLE" -Zbuild-std "$@" || st=$?
        exit "$st"
        ;;
    exe)
        shift
        [ $# -gt 0 ] || uw_die "usage: run.sh exe NAME [ARGS...]"
        name=${1%.exe}
        shift
        if [ ! -f "$host_release/$name.exe" ]; then
            found=$(find "$host_release" -maxdepth 1 -name '*.exe' -printf '%f ' 2>/dev/null || true)
            uw_die "no $name.exe in $host_release${found:+ (there are: $found)}; build it first: run.sh build"
        fi
        st=0
        if [ "$noconsole" = 1 ]; then
            # The program gets pipes, as when it is piped on Windows: no console for Wine to draw.
            # shellcheck disable=SC2016
            uw_enter bash -c 'wine "$0" "$@" < <(exec cat) 2>&1 | cat; exit "${PIPESTATUS[0]}"' \
                "$target_dir/$UW_TRIPLE/release/$name.exe" "$@" || st=$?
        else
            uw_enter wine "$target_dir/$UW_TRIPLE/release/$name.exe" "$@" || st=$?
        fi
        exit "$st"
        ;;
    shell)
        shift
        [ $# -eq 0 ] || uw_die "usage: run.sh shell"
        cat >&2 <<EOF
Windows build shell for $project (exit to leave). For example:
  cargo build --target $UW_TRIPLE -Zbuild-std --release --bins
  cargo test --target $UW_TRIPLE -Zbuild-std
  wine \$CARGO_TARGET_DIR/$UW_TRIPLE/release/NAME.exe
EOF
        st=0
        uw_enter bash -i || st=$?
        exit "$st"
        ;;
    *)
        st=0
        uw_enter "$@" || st=$?
        exit "$st"
        ;;
esac
