#!/usr/bin/env bash
# pcaps/capture.sh - regenerate the reference captures from the Docker lab.
#
# Each scenario runs in the real lab (compose/upcall.yml: server 172.28.0.10, client
# 172.28.0.20, bridge br-upcall) with tcpdump on the host's side of the bridge, and its input
# is scripted, step by step, each step waiting for the server's log to show the one before. So
# the conversation is the same every time; only ports and timings change.
#
#   upcall-basic             the old lab: one client types haii, halo, bye
#   upcall-two-clients       two clients: a message from one becomes upcalls on both
#   upcall-server-initiated  the console calls uppercase and hostname, then broadcasts
#   upcall-bad-input         nc typed by hand: unknown verb, invalid UTF-8, an overlong line,
#                            a late RETURN, a FAIL; each answered, the connection kept
#
# For each: pcaps/NAME.pcap (Ethernet, classic pcap) and pcaps/NAME.txt, its conversation as
# `cargo run --example decode` prints it. `cargo test` checks that the two agree, and that the
# same scenario run over loopback today still produces that conversation (tests/captures.rs):
# after a protocol change, run this script again and commit what it wrote. It also draws the
# ladders in pcaps/README.md again, and takes a scenario again when two clients' lines crossed
# (see in_order), so a second run gives the same .txt files and ladders.
#
# Needs what compose/lab-check.sh needs (root, dockerd, docker compose, tcpdump): run
# .ci/docker-setup.sh first on a machine without them. Usage: bash pcaps/capture.sh [NAME...]
set -uo pipefail
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"

cd "$(dirname "$0")/.." || exit 2
COMPOSE=(docker compose -f compose/upcall.yml)
# shellcheck source=compose/lab-lib.sh
. compose/lab-lib.sh   # wait_for, wait_exit, show
WORK=target/capture
mkdir -p "$WORK"

tcpdump_pid=""
server_pid=""
jobs_to_stop=()
compose_started=no
die() { printf 'capture: FAILED: %s\n' "$*" >&2; exit 1; }
say() { printf 'capture: %s\n' "$*"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 3>&- 4>&- 5>&- 6>&- 2>/dev/null
    # Only our own background jobs, by the PIDs we recorded.
    [ -n "$tcpdump_pid" ] && kill -INT "$tcpdump_pid" 2>/dev/null
    for pid in "${jobs_to_stop[@]}" $server_pid; do kill -TERM "$pid" 2>/dev/null; done
    if [ "$compose_started" = yes ]; then
        timeout 120 "${COMPOSE[@]}" down --remove-orphans >"$WORK/down.log" 2>&1
    fi
    if [ "$rc" -ne 0 ]; then
        for log in "$WORK"/*.log "$WORK"/*.out; do [ -s "$log" ] && show "$log"; done >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# step TEXT SECONDS: wait until the server's log shows TEXT, or fail the capture.
step() { wait_for "$SERVER_LOG" "$1" "${2:-10}" || die "the server never logged: $1"; }
console() { printf '%s\n' "$1" >&3; }

# client NUMBER: a clientcall in the client container whose stdin is FIFO fd 3+NUMBER, kept
# open by this script, so it types only when told and stays connected until told `bye`.
client() {
    local fd=$((3 + $1)) fifo="$WORK/client-$1.fifo"
    rm -f "$fifo"; mkfifo "$fifo"
    eval "exec $fd<>\"$fifo\""
    timeout 120 "${COMPOSE[@]}" exec -T upcall-client clientcall <"$fifo" >"$WORK/$NAME.client-$1.out" 2>&1 3>&- 4>&- 5>&- &
    jobs_to_stop+=($!)
    step "client-$1 registered hostname"
}
type_in() { printf '%s\n' "$2" >&$((3 + $1)); }

scenario_upcall-basic() {
    # The old lab's transcript, typed at a human pace.
    client 1
    sleep 0.5; type_in 1 haii; step "client-1 returned for upcall 1: ok"
    sleep 0.5; type_in 1 halo; step "client-1 returned for upcall 2: ok"
    sleep 0.5; type_in 1 bye; step "client-1 disconnected"
}

scenario_upcall-two-clients() {
    client 1
    client 2
    sleep 0.5; type_in 1 haii
    step "client-1 returned for upcall 1: ok"; step "client-2 returned for upcall 1: ok"
    sleep 0.5; type_in 2 halo
    step "client-1 returned for upcall 2: ok"; step "client-2 returned for upcall 2: ok"
    sleep 0.5; type_in 1 bye; step "client-1 disconnected"
    sleep 0.5; type_in 2 bye; step "client-2 disconnected"
}

scenario_upcall-server-initiated() {
    client 1
    sleep 0.5; console "call client-1 uppercase haii"; step "client-1 returned: HAII"
    sleep 0.5; console "call client-1 hostname"; step "client-1 returned: upcall-client"
    sleep 0.5; console "broadcast class starts now"; step "Broadcast: 1 of 1 client(s) returned"
    sleep 0.5; type_in 1 bye; step "client-1 disconnected"
}

scenario_upcall-bad-input() {
    # nc from the client container, fed line by line; the server runs with a 1 s upcall
    # timeout so that the late RETURN is late without a long wait.
    local fifo="$WORK/nc.fifo"
    rm -f "$fifo"; mkfifo "$fifo"
    exec 6<>"$fifo"
    # 6>&-: the job must not inherit our end of its own FIFO, or its input never ends.
    timeout 60 "${COMPOSE[@]}" exec -T upcall-client nc upcall-server 4141 <"$fifo" >"$WORK/$NAME.nc.out" 2>&1 6>&- &
    jobs_to_stop+=($!)
    step "Connection from: 172.28.0.20"
    nc_line() { sleep 0.5; printf '%s\n' "$1" >&6; step "$2"; }
    nc_line "HELLO there" "client-1 sent a bad line: unknown verb"
    nc_line $'MSG caf\xe9' "client-1 sent a bad line: line is not valid UTF-8"
    nc_line "MSG $(printf 'x%.0s' $(seq 1 5000))" "client-1 sent a bad line: line too long"
    nc_line "REGISTER on_event" "client-1 registered on_event"
    nc_line "MSG haii" "Upcall 1 (on_event) given up"
    nc_line "RETURN 1 ok" "client-1 sent a bad line: unknown upcall id 1"
    nc_line "REGISTER uppercase" "client-1 registered uppercase"
    sleep 0.5; console "call client-1 uppercase haii"; step "Upcall 2 to client-1: uppercase"
    nc_line "FAIL 2 not today" "client-1 failed: not today"
    nc_line "BYE" "client-1 disconnected"
    exec 6>&-
}

# in_order FILE: the decoded conversation has every RETURN or FAIL right after its UPCALL.
# With two clients the server sends a MSG's two upcalls microseconds apart, and which of
# "client-2's UPCALL" and "client-1's RETURN" crosses the bridge first is up to the scheduler.
# The reference is the order in which each upcall is answered before the next one leaves; a take
# in the other order is taken again (capture_until_in_order), so the .txt and the ladders come out
# the same every time.
in_order() {
    awk 'want != "" { if (!(($1 " " $2 " " $4) == want && ($3 == "RETURN" || $3 == "FAIL"))) bad = 1; want = "" }
         $3 == "UPCALL" { want = $1 " C>S " $4 }
         END { exit bad }' "$1"
}

capture_until_in_order() {
    local take
    for take in 1 2 3 4 5 6 7 8; do
        capture "$1" && return 0
        say "$1, take $take: a RETURN did not follow its UPCALL (two clients' lines crossed); again"
    done
    die "$1: no take in the reference order in 8 tries"
}

# The ladders in pcaps/README.md, drawn again from the captures (tests/diagrams.rs checks them).
regenerate_ladders() {
    local name block out=pcaps/README.md.new
    cp pcaps/README.md "$out"
    for name in "$@"; do
        block=$(cargo run -q --example decode -- --ladder "pcaps/$name.pcap") || die "ladder of $name failed"
        LADDER="$block" awk -v marker="<!-- ladder: $name.pcap -->" '
            $0 == marker { print; getline; print; print ENVIRON["LADDER"]; skip = 1; next }
            skip && /^```$/ { skip = 0 }
            !skip { print }' "$out" >"$out.tmp" && mv "$out.tmp" "$out"
    done
    mv "$out" pcaps/README.md
    say "pcaps/README.md: ladders of $* drawn again"
}

capture() {
    NAME=$1
    SERVER_LOG="$WORK/$NAME.server.log"
    local pcap="$WORK/$NAME.pcap" args=()
    [ "$NAME" = upcall-bad-input ] && args=(--upcall-timeout 1)
    rm -f "$pcap" "$SERVER_LOG" "$WORK/$NAME".*.out
    say "== $NAME"

    # The capture starts before the server, so every handshake is in it. Only port 4141:
    # nothing else of the host's traffic ends up in a file that is checked in.
    tcpdump -i br-upcall -w "$pcap" -Z root -U --immediate-mode 'tcp port 4141' 2>"$WORK/$NAME.tcpdump.log" &
    tcpdump_pid=$!
    wait_for "$WORK/$NAME.tcpdump.log" "listening on br-upcall" 15 || die "tcpdump did not start"

    rm -f "$WORK/console.fifo"; mkfifo "$WORK/console.fifo"
    exec 3<>"$WORK/console.fifo"
    timeout 300 "${COMPOSE[@]}" exec -T upcall-server servercall "${args[@]}" <"$WORK/console.fifo" >"$SERVER_LOG" 2>&1 3>&- &
    server_pid=$!
    step "servercall listening on 0.0.0.0:4141" 30

    "scenario_$NAME"

    # Every connection is closed by now. `quit` wakes the server's accept loop with a
    # connection of its own, inside the server container: it never crosses the bridge.
    console quit
    wait_exit "$server_pid" 20 || die "the server did not stop"
    server_pid=""
    exec 3>&-
    for pid in "${jobs_to_stop[@]}"; do wait_exit "$pid" 20 || die "a client did not stop"; done
    jobs_to_stop=()
    sleep 0.5   # the last FIN and its ACK
    kill -INT "$tcpdump_pid"; wait_exit "$tcpdump_pid" 10 || die "tcpdump did not stop"
    tcpdump_pid=""

    cargo run -q --example decode -- "$pcap" >"$WORK/$NAME.txt" || die "decode failed"
    in_order "$WORK/$NAME.txt" || return 1
    cp "$pcap" "pcaps/$NAME.pcap"
    cp "$WORK/$NAME.txt" "pcaps/$NAME.txt"
    say "pcaps/$NAME.pcap: $(tcpdump -r "pcaps/$NAME.pcap" 2>/dev/null | wc -l) packets; pcaps/$NAME.txt:"
    sed 's/^/    /' "pcaps/$NAME.txt"
}

[ "$(id -u)" -eq 0 ] || die "run me as root (tcpdump on the bridge)"
timeout 20 docker compose version >/dev/null 2>&1 || die "no docker compose: run .ci/docker-setup.sh first"
cargo build -q --example decode || die "cannot build the decoder"
timeout 120 "${COMPOSE[@]}" down --remove-orphans >"$WORK/down.log" 2>&1
compose_started=yes
if ! { timeout 900 "${COMPOSE[@]}" build && timeout 300 "${COMPOSE[@]}" up -d; } >"$WORK/up.log" 2>&1; then
    die "compose up failed (see $WORK/up.log)"
fi

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(upcall-basic upcall-two-clients upcall-server-initiated upcall-bad-input)
for name in "${names[@]}"; do
    declare -F "scenario_$name" >/dev/null || die "no scenario $name"
    capture_until_in_order "$name"
done
regenerate_ladders "${names[@]}"
say "done: ${names[*]}"
