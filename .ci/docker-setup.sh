#!/usr/bin/env bash
# .ci/docker-setup.sh - make this machine able to run the upcall Docker lab.
#
# Runs as root on a fresh Debian 12 (bookworm) machine whose only way out is the package
# registries: no image registry, no systemd. It is idempotent: a second run only checks
# what the first one did and takes a few seconds. In order it:
#   1. installs Debian's docker.io (20.10), debootstrap, tcpdump and iproute2 if missing;
#   2. starts dockerd in the background if `docker info` does not answer;
#   3. builds a stand-in for the image debian:trixie-slim with debootstrap (it cannot be
#      pulled: there is no image registry), under that exact tag, so the Dockerfile's
#      `FROM debian:trixie-slim` works unchanged;
#   4. installs the Compose v2 plugin (`docker compose`) from trixie's docker-compose
#      package, fetched with apt inside the trixie tree of step 3.
#
# Environment knobs (all optional):
#   UPCALL_TRIXIE_CACHE   where the trixie tree is kept between runs (/var/cache/upcall-trixie)
#   UPCALL_DEBIAN_MIRROR  Debian mirror URL for debootstrap (default: read from apt's sources)
#   UPCALL_DOCKERD_LOG    dockerd's log file when this script starts it (/var/log/upcall-dockerd.log)
set -euo pipefail

# Which docker client: /usr/bin/docker, the one that comes with the daemon (docker.io 20.10).
# Some machines also carry a standalone newer client in /usr/local/bin (28.2.2 here, from no
# package), which comes first on root's usual PATH. Tried against this 20.10 daemon, that
# client works for `version`, `run`, `compose` (it negotiates API 1.41 down from its 1.50),
# but it has no buildx plugin: its `docker build` falls back to the deprecated legacy builder
# with a warning, and with DOCKER_BUILDKIT=1 it refuses to build at all ("BuildKit is enabled
# but the buildx component is missing"). It is also not from a package, so a machine may
# lack it or carry another version. Putting /usr/bin first makes client, daemon and compose
# plugin one known set, the same on a fresh machine and on this one.
# compose/lab-check.sh does the same.
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"
export DEBIAN_FRONTEND=noninteractive

CACHE="${UPCALL_TRIXIE_CACHE:-/var/cache/upcall-trixie}"
ROOTFS="$CACHE/rootfs"             # the debootstrapped trixie tree (kept: a rerun is fast)
BASE_TAG="debian:trixie-slim"      # the tag the Dockerfile starts FROM
DOCKERD_LOG="${UPCALL_DOCKERD_LOG:-/var/log/upcall-dockerd.log}"
# The system-wide plugin directory works whatever $HOME is; ~/.docker/cli-plugins gets a link.
PLUGIN_DIR="/usr/local/lib/docker/cli-plugins"

started=$(date +%s)
say() { printf 'docker-setup: [%3ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }
die() { printf 'docker-setup: ERROR: %s\n' "$*" >&2; exit 1; }
# Any command that fails without its own message still says where it was.
on_err() { printf 'docker-setup: ERROR: command failed (exit %s) at line %s: %s\n' "$1" "$2" "$3" >&2; }
trap 'on_err "$?" "$LINENO" "$BASH_COMMAND"' ERR

[ "$(id -u)" -eq 0 ] || die "run me as root (I install packages and start dockerd)"

# ---------------------------------------------------------------- 1. packages
need=()
for pkg in docker.io debootstrap tcpdump iproute2; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        need+=("$pkg")
    fi
done
if [ "${#need[@]}" -gt 0 ]; then
    say "apt-get update; apt-get install ${need[*]}"
    # --no-install-recommends: docker.io recommends git, apparmor, needrestart ... none needed.
    apt_log=/var/log/upcall-docker-setup-apt.log
    { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; } >"$apt_log" 2>&1 || {
        tail -n 30 "$apt_log" >&2
        die "apt-get update / install ${need[*]} failed (full log: $apt_log)"
    }
else
    say "packages present: docker.io debootstrap tcpdump iproute2"
fi
if [ ! -x /usr/bin/docker ] || [ ! -x /usr/sbin/dockerd ]; then
    die "docker.io is installed but /usr/bin/docker or /usr/sbin/dockerd is missing"
fi

# ---------------------------------------------------------------- 2. dockerd
# `timeout`: a daemon that is half up can leave `docker info` waiting for a long time.
docker_answers() { timeout 10 docker info >/dev/null 2>&1; }
if docker_answers; then
    say "dockerd already answers"
else
    say "starting dockerd in the background (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # No systemd here: start it ourselves. setsid + nohup detach it from this script, so it
    # outlives the script and the CI step that ran it. dockerd starts its own containerd.
    setsid nohup /usr/sbin/dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    dockerd_pid=$!
    up=no
    for _ in $(seq 1 60); do
        if docker_answers; then up=yes; break; fi
        kill -0 "$dockerd_pid" 2>/dev/null || break      # it died: no point waiting longer
        sleep 1
    done
    if [ "$up" != yes ]; then
        echo "---- last lines of $DOCKERD_LOG" >&2
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        die "dockerd (PID $dockerd_pid) did not answer 'docker info' within 60s"
    fi
    say "dockerd is up (PID $dockerd_pid)"
fi
say "docker: client $(docker version -f '{{.Client.Version}}'), server $(docker version -f '{{.Server.Version}}')"

# ---------------------------------------------------------------- 3. debian:trixie-slim
# The Debian mirror this machine's apt already uses, read at run time (deb822 *.sources
# first, then the one-line sources.list format): the stanza whose Suites has this
# release's plain codename (not -security, not -updates).
debian_mirror() {
    local codename
    # shellcheck disable=SC1091
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v want="$codename" '
            BEGIN { RS = ""; FS = "\n" }          # one deb822 stanza per record
            {
                uris = ""; ok = 0; enabled = 1
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^[ \t]*#/) continue
                    if (line ~ /^URIs:/)    { sub(/^URIs:[ \t]*/, "", line); uris = line }
                    if (line ~ /^Suites:/)  { sub(/^Suites:[ \t]*/, "", line); n = split(line, s, /[ \t]+/)
                                              for (j = 1; j <= n; j++) if (s[j] == want) ok = 1 }
                    if (line ~ /^Enabled:[ \t]*no/) enabled = 0
                }
                if (ok && enabled && uris != "") { split(uris, u, /[ \t]+/); print u[1]; exit }
            }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI suite components...
        sed -E 's/\[[^]]*\]//' "$f" | awk -v want="$codename" '$1 == "deb" && $3 == want { print $2; exit }'
    done
}

# The trixie tree, made once and kept in $CACHE: the image and the compose plugin come from it.
ensure_rootfs() {
    if [ -f "$ROOTFS/.upcall-complete" ]; then
        say "reusing the trixie tree in $ROOTFS"
        return
    fi
    local mirror
    mirror="${UPCALL_DEBIAN_MIRROR:-$(debian_mirror | head -n 1)}"
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d}; set UPCALL_DEBIAN_MIRROR"
    say "debootstrap --variant=minbase trixie from $mirror (a minute or two)"
    rm -rf "$ROOTFS"
    mkdir -p "$CACHE"
    if ! debootstrap --variant=minbase trixie "$ROOTFS" "$mirror" >"$CACHE/debootstrap.log" 2>&1; then
        tail -n 30 "$CACHE/debootstrap.log" >&2
        die "debootstrap failed (full log: $CACHE/debootstrap.log)"
    fi
    # The marker is written last: a tree without it was cut short and is made again.
    touch "$ROOTFS/.upcall-complete"
}

if docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    say "image $BASE_TAG present"
else
    ensure_rootfs
    say "importing $ROOTFS as $BASE_TAG"
    # Leave out what an official slim image does not carry either: downloaded package lists,
    # cached .debs, our marker. debootstrap wrote /etc/apt/sources.list for the same mirror,
    # so `apt-get update` works inside containers made from it.
    tar -C "$ROOTFS" -c \
        --exclude=./.upcall-complete \
        --exclude='./var/lib/apt/lists/*' \
        --exclude='./var/cache/apt/archives/*.deb' \
        --exclude='./var/cache/apt/*.bin' \
        --exclude='./tmp/*' \
        . | docker import \
            --change 'CMD ["bash"]' \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "$BASE_TAG" >/dev/null || die "docker import of $ROOTFS failed"
    say "image $BASE_TAG built: $(docker image inspect -f '{{.Size}}' "$BASE_TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
fi

# ---------------------------------------------------------------- 4. docker compose (v2)
# bookworm has no Compose v2 package (its docker-compose is the old Python v1), but trixie's
# docker-compose package (2.x) ships the plugin usr/libexec/docker/cli-plugins/docker-compose.
# Fetch that .deb with apt inside the trixie tree, unpack it, and install the one file.
if docker compose version >/dev/null 2>&1; then
    say "docker compose present: $(docker compose version --short)"
else
    ensure_rootfs
    say "fetching trixie's docker-compose package inside $ROOTFS"
    cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"      # name lookups inside the chroot
    chroot "$ROOTFS" apt-get update -qq >/dev/null || die "apt-get update inside the trixie chroot failed"
    rm -rf "$ROOTFS/tmp/compose" && mkdir -p "$ROOTFS/tmp/compose" && chmod 777 "$ROOTFS/tmp/compose"
    chroot "$ROOTFS" sh -c 'cd /tmp/compose && apt-get download -qq docker-compose' \
        || die "apt-get download docker-compose inside the trixie chroot failed"
    deb=$(find "$ROOTFS/tmp/compose" -maxdepth 1 -name 'docker-compose_*.deb' | head -n 1)
    [ -n "$deb" ] || die "no docker-compose .deb was downloaded"
    dpkg-deb -x "$deb" "$ROOTFS/tmp/compose/x"
    plugin="$ROOTFS/tmp/compose/x/usr/libexec/docker/cli-plugins/docker-compose"
    [ -x "$plugin" ] || die "$(basename "$deb") has no usr/libexec/docker/cli-plugins/docker-compose"
    install -D -m 0755 "$plugin" "$PLUGIN_DIR/docker-compose"
    mkdir -p "${HOME:-/root}/.docker/cli-plugins"
    ln -sfn "$PLUGIN_DIR/docker-compose" "${HOME:-/root}/.docker/cli-plugins/docker-compose"
    rm -rf "$ROOTFS/tmp/compose"
    docker compose version >/dev/null 2>&1 \
        || die "installed $PLUGIN_DIR/docker-compose but 'docker compose version' fails: $("$PLUGIN_DIR/docker-compose" version 2>&1 | head -n 3)"
    say "docker compose installed from $(basename "$deb"): $(docker compose version --short)"
fi

say "done: docker, $BASE_TAG and docker compose are ready"
