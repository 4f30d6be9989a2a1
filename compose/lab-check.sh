#!/usr/bin/env bash
# compose/lab-check.sh - run the upcall Docker lab end to end, as a student would, and check it.
#
# Needs: root, dockerd running, `docker compose`, tcpdump, ip, script (util-linux) (.ci/docker-setup.sh sets all
# that up; .ci/run calls it first). Run from anywhere: it works from the repository root.
#
# The steps are the lab sheet's, with the same commands:
#   1. docker compose -f compose/upcall.yml up -d            both containers run (built first)
#   2. tcpdump -nvi br-upcall -w FILE -Z root                capture on the lab bridge (Linux host)
#      docker compose ... exec upcall-server tcpdump ... -w /captures/upcall.pcap
#                                                            and -w - (live): any laptop's capture
#   3. docker compose ... exec -T upcall-server servercall    the server, console on a FIFO
#   4. printf 'haii\nhalo\nbye\n' | docker compose ... exec -T upcall-client clientcall
#      then the any-laptop captures decode to pcaps/upcall-basic.txt
#   5. a second client; nc typing the protocol by hand; console `call client-2 hostname`, `quit`
#   6. the capture holds the upcall/1 conversation between 172.28.0.20 and 172.28.0.10:4141
#   6b. class mode: compose/class.yml publishes the port; clientcall on the host reaches the server
#   7. ip a show br-upcall                                    the host's side is 172.28.0.1
#   7c. Ctrl-C (in a terminal made by `script`) on servercall and tcpdump: nothing is left running
#   (4b also compares the captures with Docker alone, no Rust on the PATH: the image's `decode`,
#   and Ctrl-C on the live capture's `exec -T ... ended-with-input tcpdump` must stop that tcpdump)
#   8. docker compose -f compose/upcall.yml down             nothing is left behind
#
# Every wait is bounded, so it never hangs. Whatever happens, an EXIT trap stops the tcpdump
# it started (by PID) and runs `docker compose down`; on failure it says which step failed
# and prints the server log and the client transcripts.
#
# Output files go to target/lab-check/ (or $UPCALL_LAB_OUT): server.log, client-1.txt,
# client-2.txt, upcall.pcap, tcpdump.log, ip-a.txt, live.pcap, class-*.txt. The any-laptop
# capture is where the README puts it, captures/upcall.pcap (an older one there is replaced).
# UPCALL_LAB_VERBOSE=1 prints them at the end.
set -uo pipefail

# /usr/bin first: the docker client that came with the daemon (see .ci/docker-setup.sh).
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
COMPOSE=(docker compose -f compose/upcall.yml)
# shellcheck source=compose/lab-lib.sh
. compose/lab-lib.sh   # wait_for, wait_for_re, wait_exit, show
OUT="${UPCALL_LAB_OUT:-$ROOT/target/lab-check}"
PCAP="$OUT/upcall.pcap"
SERVER_LOG="$OUT/server.log"
CLIENT1="$OUT/client-1.txt"
CLIENT2="$OUT/client-2.txt"
NC_LOG="$OUT/nc-session.txt"
# The any-laptop capture: written inside the server container to /captures, which is the
# repository's captures/ folder (compose/upcall.yml mounts it); and the live one, streamed out.
LAPTOP_PCAP="$ROOT/captures/upcall.pcap"
LIVE_PCAP="$ROOT/captures/live.pcap"   # in captures/, so that the container can decode it too
CLASS_LOG="$OUT/class-server.txt"
CLASS_CLIENT="$OUT/class-client.txt"
SERVER_IP=172.28.0.10
CLIENT_IP=172.28.0.20
GATEWAY=172.28.0.1
PORT=4141

passed=0
failed=0
current="0. preparing"
tcpdump_pid=""
server_pid=""
client2_pid=""
laptop_pid=""        # the docker compose exec jobs that run tcpdump in the server container
live_pid=""
compose_started=no   # the trap runs `compose down` only once the run got that far
started=$(date +%s)

elapsed() { echo "$(( $(date +%s) - started ))s"; }
step() { current="$*"; printf '\nlab-check: == step %s  [%s]\n' "$*" "$(elapsed)"; }
ok() { passed=$((passed + 1)); printf 'lab-check:   ok   %s\n' "$*"; }
# A failed check ends the run: every later step builds on the ones before it.
fail() {
    failed=$((failed + 1))
    printf 'lab-check:   FAIL %s\n' "$*" >&2
    exit 1
}
check() { # check "what" command...: passes if the command succeeds
    local what=$1; shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 3>&- 4>&- 5>&- 7>&-
    # Our own background processes, by the PIDs we recorded (never by name).
    if [ -n "$tcpdump_pid" ] && kill -0 "$tcpdump_pid" 2>/dev/null; then
        kill -INT "$tcpdump_pid" 2>/dev/null; wait_exit "$tcpdump_pid" 10 || kill -KILL "$tcpdump_pid" 2>/dev/null
    fi
    for pid in $client2_pid $server_pid $laptop_pid $live_pid; do
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    done
    if [ "$compose_started" = yes ]; then
        timeout 120 "${COMPOSE[@]}" down --remove-orphans >"$OUT/down-trap.log" 2>&1 \
            || printf "lab-check: WARNING: 'docker compose down' in the exit trap failed, see %s\n" "$OUT/down-trap.log" >&2
    fi
    if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
        [ "$failed" -ne 0 ] || failed=1   # stopped by a signal or an unexpected error
        {
            printf '\nlab-check: FAILED in step %s (exit %s)\n' "$current" "$rc"
            case "$current" in
                0.*) ;;   # nothing ran yet: the message above says what is missing
                1.*) echo "---- last lines of $OUT/up.log"; tail -n 30 "$OUT/up.log" ;;
                *)   show "$SERVER_LOG"; show "$CLIENT1"; show "$CLIENT2"
                     [ -s "$OUT/tcpdump.log" ] && show "$OUT/tcpdump.log" ;;
            esac
        } >&2
        rc=1
    elif [ "${UPCALL_LAB_VERBOSE:-0}" = 1 ]; then
        show "$OUT/ip-a.txt"; show "$CLIENT1"; show "$CLIENT2"; show "$SERVER_LOG"
    fi
    printf '\nlab-check: files in %s (%s)\n' "$OUT" "$(elapsed)"
    printf 'lab-check: %d passed, %d failed\n' "$passed" "$failed"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- 0. preparing
mkdir -p "$OUT" || exit 2
# Only the files of an earlier run (not `rm -rf "$OUT"`: $UPCALL_LAB_OUT may be any folder).
rm -f "$OUT"/{upcall.pcap,capture.txt,decoded.txt,decode.log,server.log,client-1.txt,client-2.txt,nc-session.txt,console.fifo,client-2.fifo} \
      "$OUT"/{tcpdump.log,ip-a.txt,up.log,down.log,down-before.log,down-trap.log} \
      "$OUT"/{live.pcap,laptop-tcpdump.log,live-tcpdump.log,laptop-decoded.txt,live-decoded.txt} \
      "$OUT"/{class-up.log,class-server.txt,class-client.txt,class-console.fifo,tty-*.txt,tty-in.fifo} "$LAPTOP_PCAP" "$LIVE_PCAP"
[ "$(id -u)" -eq 0 ] || { echo "lab-check: run me as root (tcpdump on the bridge)" >&2; exit 2; }
for tool in docker tcpdump ip timeout mkfifo script; do
    command -v "$tool" >/dev/null || { echo "lab-check: $tool is missing: run .ci/docker-setup.sh first" >&2; exit 2; }
done
timeout 20 docker info >/dev/null 2>&1 || { echo "lab-check: dockerd does not answer: run .ci/docker-setup.sh first" >&2; exit 2; }
timeout 20 docker compose version >/dev/null 2>&1 || { echo "lab-check: no 'docker compose': run .ci/docker-setup.sh first" >&2; exit 2; }
# A clean slate: a run that was killed before its trap ran may have left containers behind.
timeout 120 "${COMPOSE[@]}" down --remove-orphans >"$OUT/down-before.log" 2>&1 \
    || { echo "lab-check: 'docker compose down' before the run failed:" >&2; cat "$OUT/down-before.log" >&2; exit 1; }

# ---------------------------------------------------------------- 1. up
step "1. docker compose -f compose/upcall.yml up -d"
compose_started=yes
# `build` first: Docker keeps images between runs, and a plain `up -d` would happily start an
# image built from older sources. The layer cache makes this a second or two when nothing
# changed. Then the students' own command, literally. (Only upcall-server has a build:
# section, so the image is built once.)
if timeout 900 "${COMPOSE[@]}" build >"$OUT/up.log" 2>&1 \
    && timeout 300 "${COMPOSE[@]}" up -d >>"$OUT/up.log" 2>&1; then
    ok "compose up -d (image upcall-lab:latest, $(elapsed))"
else
    fail "compose up -d failed (see $OUT/up.log)"
fi
for name in upcall-server upcall-client; do
    check "container $name is running" \
        test "$(timeout 20 docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" = true
done

# ---------------------------------------------------------------- 2. tcpdump
step "2. tcpdump -nvi br-upcall -w $PCAP -Z root"
# Started straight from this shell (not `cd dir && tcpdump &`, whose $! would be a subshell),
# so $! is tcpdump's own PID and we can stop it by PID. -Z root: Debian's tcpdump otherwise
# drops to the user tcpdump, who may not write to $OUT. --immediate-mode and -U hand each
# packet over and write it at once: without them the last second of traffic can still sit in
# the kernel's buffer when tcpdump is stopped, and is lost.
tcpdump -nvi br-upcall -w "$PCAP" -Z root -U --immediate-mode 2>"$OUT/tcpdump.log" &
tcpdump_pid=$!
if wait_for "$OUT/tcpdump.log" "listening on br-upcall" 15; then
    ok "tcpdump (PID $tcpdump_pid) is listening on br-upcall"
else
    fail "tcpdump did not start listening on br-upcall within 15s"
fi

# ---------------------------------------------------------------- 2b. the any-laptop capture
step "2b. docker compose -f compose/upcall.yml exec -T upcall-server tcpdump ... -w /captures/upcall.pcap, and -w - (live)"
# The README's commands for Docker Desktop, where the host cannot see the bridge: tcpdump runs
# in the server container. -T here because nobody sits at a terminal; the live one needs -T
# anyway (a terminal would turn every \n of the binary stream into \r\n).
"${COMPOSE[@]}" exec -T upcall-server tcpdump -i eth0 -U -Z root -w /captures/upcall.pcap tcp port 4141 \
    2>"$OUT/laptop-tcpdump.log" &
laptop_pid=$!
# The live one as the README gives it, with ended-with-input; its stdin is a FIFO held open on
# fd 5, as a terminal would be.
mkfifo "$OUT/live-in.fifo" 2>/dev/null || true
exec 5<>"$OUT/live-in.fifo"
# `script` gives it a terminal, as a student's has, so that \003 (the Ctrl-C key) below is SIGINT
# to the docker command, as in a terminal (a script's background job would ignore a plain kill -INT).
script -qfec "${COMPOSE[*]} exec -T upcall-server ended-with-input tcpdump -i eth0 -U -w - tcp port 4141 >'$LIVE_PCAP' 2>'$OUT/live-tcpdump.log'" \
    /dev/null <"$OUT/live-in.fifo" >/dev/null 2>&1 &
live_pid=$!
for log in laptop-tcpdump.log live-tcpdump.log; do
    check "tcpdump in upcall-server is listening on eth0 ($log)" wait_for "$OUT/$log" "listening on eth0" 20
done

# ---------------------------------------------------------------- 3. server
step "3. docker compose -f compose/upcall.yml exec -T upcall-server servercall (console on a FIFO)"
mkfifo "$OUT/console.fifo" "$OUT/client-2.fifo"
# The console: fd 3 is opened read-write, which never blocks, and holds the FIFO open so the
# server sees no end of input until we close it. `timeout` bounds the whole server run.
exec 3<>"$OUT/console.fifo"
timeout 180 "${COMPOSE[@]}" exec -T upcall-server servercall <"$OUT/console.fifo" >"$SERVER_LOG" 2>&1 &
server_pid=$!
if wait_for "$SERVER_LOG" "servercall listening on 0.0.0.0:$PORT (upcall/1)" 30; then
    ok "server says: servercall listening on 0.0.0.0:$PORT (upcall/1)"
else
    fail "server did not say 'servercall listening on 0.0.0.0:$PORT (upcall/1)' within 30s"
fi

# ---------------------------------------------------------------- 4. first client
step "4. printf 'haii\\nhalo\\nbye\\n' | docker compose -f compose/upcall.yml exec -T upcall-client clientcall"
printf 'haii\nhalo\nbye\n' | timeout 60 "${COMPOSE[@]}" exec -T upcall-client clientcall >"$CLIENT1" 2>&1
status=$?
check "client exits 0 (got $status)" test "$status" -eq 0
for word in haii halo; do
    check "client printed: Received upcall from server: Upcall event: Processing $word" \
        grep -qF "Received upcall from server: Upcall event: Processing $word" "$CLIENT1"
done
check "server logged: Connection from: $CLIENT_IP:<port> (client-1)" \
    wait_for_re "$SERVER_LOG" "Connection from: $CLIENT_IP:[0-9]+ \(client-1\)" 10
check "server logged: Received from client-1: haii" wait_for "$SERVER_LOG" "Received from client-1: haii" 10
check "server logged: client-1 returned for upcall 1: ok" wait_for "$SERVER_LOG" "client-1 returned for upcall 1: ok" 10

# ---------------------------------------------------------------- 4b. the any-laptop capture
step "4b. stop the tcpdumps in upcall-server (Ctrl-C); captures/upcall.pcap is client-1's conversation"
check "server logged: client-1 disconnected" wait_for "$SERVER_LOG" "client-1 disconnected" 10
# A student presses Ctrl-C seconds later; wait a little too, so that the last packets have
# left the kernel's capture buffer (the README's command has no --immediate-mode).
sleep 2
# The live capture: Ctrl-C in its terminal ends the docker command on the host (SIGINT to it);
# ended-with-input then stops tcpdump in the container. Nothing may be left running there.
printf '\003' >&5
wait_exit "$live_pid" 15 || fail "the docker compose exec of the live tcpdump did not end on Ctrl-C"
live_pid=""
exec 5>&-
gone=no
for _ in $(seq 1 50); do
    [ "$(timeout 20 docker top upcall-server -eo pid,comm | awk '$2 == "tcpdump"' | wc -l)" -le 1 ] && { gone=yes; break; }
    sleep 0.2
done
check "Ctrl-C on the live capture's docker command leaves no tcpdump of it in upcall-server" test "$gone" = yes
# The README's step 2 runs with a terminal, where Ctrl-C is SIGINT to tcpdump inside the
# container. `docker top` gives the host PIDs of the container's processes: the tcpdump this run
# started there, stopped by PID.
mapfile -t tcpdump_pids < <(timeout 20 docker top upcall-server -eo pid,comm | awk '$2 == "tcpdump" { print $1 }')
check "docker top shows step 2's tcpdump in upcall-server (PIDs ${tcpdump_pids[*]})" \
    test "${#tcpdump_pids[@]}" -eq 1
for pid in "${tcpdump_pids[@]}"; do kill -INT "$pid"; done
if wait_exit "$laptop_pid" 15; then
    check "the docker compose exec of that tcpdump ended (exit $exit_status)" test "$exit_status" -eq 0
else
    fail "tcpdump in upcall-server did not stop within 15s of SIGINT"
fi
laptop_pid=""
check "captures/upcall.pcap is on the host" test -s "$LAPTOP_PCAP"
mode=$(stat -c %a "$LAPTOP_PCAP")
check "captures/upcall.pcap is readable by every user (mode $mode)" test $(( 8#$mode & 8#004 )) -ne 0
# The comparison with Docker alone, as the README gives it: the decoder in the image, the
# reference captures mounted at /pcaps. Run with no Rust on the PATH, as on a Docker-only laptop.
NO_RUST_PATH=/usr/sbin:/usr/bin:/sbin:/bin
check "no cargo on the PATH for the Docker-only comparison" \
    test -z "$(PATH=$NO_RUST_PATH command -v cargo)"
for name in upcall live; do
    PATH=$NO_RUST_PATH timeout 60 "${COMPOSE[@]}" exec -T upcall-server \
        sh -c "decode /captures/$name.pcap | diff /pcaps/upcall-basic.txt -" >"$OUT/$name-compare.txt" 2>&1
    status=$?
    check "docker compose ... exec upcall-server sh -c \"decode /captures/$name.pcap | diff /pcaps/upcall-basic.txt -\" prints nothing (exit $status)" \
        test "$status" -eq 0 -a ! -s "$OUT/$name-compare.txt"
done
# And with Rust, the README's cargo command, on the same file.
if timeout 300 cargo run -q --example decode -- "$LAPTOP_PCAP" >"$OUT/laptop-decoded.txt" 2>"$OUT/decode.log"; then
    check "cargo run -q --example decode -- captures/upcall.pcap | diff pcaps/upcall-basic.txt -" \
        diff pcaps/upcall-basic.txt "$OUT/laptop-decoded.txt"
else
    fail "cargo run --example decode could not read $LAPTOP_PCAP (see $OUT/decode.log)"
fi

# ---------------------------------------------------------------- 5. console call
step "5. a second client; console: list, call client-2 hostname, quit"
client_hostname=$(timeout 20 "${COMPOSE[@]}" exec -T upcall-client hostname 2>/dev/null | tr -d '\r\n')
check "upcall-client's hostname is '$client_hostname'" test -n "$client_hostname"
# The second client's stdin is another FIFO held open on fd 4: it stays connected until we
# write `bye`, however long the console call takes.
exec 4<>"$OUT/client-2.fifo"
timeout 120 "${COMPOSE[@]}" exec -T upcall-client clientcall <"$OUT/client-2.fifo" >"$CLIENT2" 2>&1 &
client2_pid=$!
check "server logged: Connection from: $CLIENT_IP:<port> (client-2)" \
    wait_for_re "$SERVER_LOG" "Connection from: $CLIENT_IP:[0-9]+ \(client-2\)" 20
# A student typing the protocol by hand: nc in the client container. Its message reaches
# client-2 as an upcall ("client-3 says ..."); nc never answers its own upcall, and BYE closes.
printf 'REGISTER on_event\nMSG typed by hand\nBYE\n' \
    | timeout 30 "${COMPOSE[@]}" exec -T upcall-client nc upcall-server 4141 >"$NC_LOG" 2>&1
for line in "WELCOME client-3 upcall/1" "REGISTERED on_event" \
            "UPCALL 1 on_event Upcall event: Processing typed by hand" "BYE"; do
    check "nc session got: $line" grep -qxF -- "$line" "$NC_LOG"
done
check "client-2 printed: Received upcall from server: Upcall event: client-3 says typed by hand" \
    wait_for "$CLIENT2" "Received upcall from server: Upcall event: client-3 says typed by hand" 10
# The client registers its callbacks right after WELCOME; `list` shows them.
echo "list" >&3
check "console list shows client-2 at $CLIENT_IP with callback hostname" \
    wait_for_re "$SERVER_LOG" "^client-2 +$CLIENT_IP:[0-9]+ +.*hostname" 10
echo "call client-2 hostname" >&3
check "server printed: client-2 returned: $client_hostname" \
    wait_for "$SERVER_LOG" "client-2 returned: $client_hostname" 20
echo "bye" >&4
if wait_exit "$client2_pid" 20; then
    check "second client exits 0 (got $exit_status)" test "$exit_status" -eq 0
else
    fail "second client did not exit within 20s of 'bye'"
fi
client2_pid=""
exec 4>&-
echo "quit" >&3
if wait_exit "$server_pid" 20; then
    check "server exits 0 after quit (got $exit_status)" test "$exit_status" -eq 0
else
    fail "server did not exit within 20s of 'quit'"
fi
server_pid=""
exec 3>&-

# ---------------------------------------------------------------- 6. the capture
step "6. stop tcpdump; the capture holds the upcall/1 conversation"
kill -INT "$tcpdump_pid"
if wait_exit "$tcpdump_pid" 10; then ok "tcpdump (PID $tcpdump_pid) stopped"; else fail "tcpdump did not stop within 10s"; fi
tcpdump_pid=""
packets=$(timeout 30 tcpdump -nr "$PCAP" "tcp and host $CLIENT_IP and host $SERVER_IP and port $PORT" 2>/dev/null | wc -l)
check "capture has $packets TCP packets between $CLIENT_IP and $SERVER_IP:$PORT" test "$packets" -gt 0
timeout 30 tcpdump -r "$PCAP" -A "tcp port $PORT" >"$OUT/capture.txt" 2>/dev/null
for line in "WELCOME client-1 upcall/1" "REGISTER on_event" "REGISTERED on_event" "MSG haii" \
            "UPCALL 1 on_event Upcall event: Processing haii" "RETURN 1 ok" "BYE" \
            "WELCOME client-2 upcall/1" "UPCALL 2 hostname" "RETURN 2 $client_hostname"; do
    check "capture contains: $line" grep -qF -- "$line" "$OUT/capture.txt"
done

# The students' comparison: the first connection is the old lab's session, the same as the
# reference capture's (cargo is at hand here; on a student's machine too, for this step).
if timeout 300 cargo run -q --example decode -- "$PCAP" >"$OUT/decoded.txt" 2>"$OUT/decode.log"; then
    check "decode of the capture: client-1's conversation is pcaps/upcall-basic.txt" \
        diff pcaps/upcall-basic.txt <(grep '^c1 ' "$OUT/decoded.txt")
else
    fail "cargo run --example decode could not read the capture (see $OUT/decode.log)"
fi

# ---------------------------------------------------------------- 6b. class mode
step "6b. class mode: compose/class.yml publishes port 4141; clientcall on the host"
# A free host port instead of 4141, which a servercall on this machine may be using.
class_port=""
for candidate in $(seq 14141 14199); do
    if [ -z "$(ss -ltnH "sport = :$candidate" 2>/dev/null)" ]; then class_port=$candidate; break; fi
done
check "a free host port for the class server ($class_port)" test -n "$class_port"
if UPCALL_CLASS_PORT=$class_port timeout 120 "${COMPOSE[@]}" -f compose/class.yml up -d >"$OUT/class-up.log" 2>&1; then
    ok "docker compose -f compose/upcall.yml -f compose/class.yml up -d (host port $class_port)"
else
    fail "compose up with compose/class.yml failed (see $OUT/class-up.log)"
fi
check "docker port upcall-server shows 4141/tcp on host port $class_port" \
    grep -qE ":$class_port\$" <(timeout 20 docker port upcall-server 4141/tcp)
mkfifo "$OUT/class-console.fifo"
exec 3<>"$OUT/class-console.fifo"
timeout 120 "${COMPOSE[@]}" exec -T upcall-server servercall <"$OUT/class-console.fifo" >"$CLASS_LOG" 2>&1 &
server_pid=$!
check "class server says: servercall listening on 0.0.0.0:$PORT (upcall/1)" \
    wait_for "$CLASS_LOG" "servercall listening on 0.0.0.0:$PORT (upcall/1)" 30
# A student's laptop: clientcall built with cargo on the host, through the published port.
printf 'haii\nhalo\nbye\n' | timeout 300 cargo run -q --bin clientcall -- --server "127.0.0.1:$class_port" >"$CLASS_CLIENT" 2>&1
status=$?
check "clientcall on the host exits 0 (got $status)" test "$status" -eq 0
expected_class_client="Connected to 127.0.0.1:$class_port as client-1.
Enter message: Received upcall from server: Upcall event: Processing haii
Enter another message: Received upcall from server: Upcall event: Processing halo
Enter another message: "
check "clientcall on the host got both upcalls" diff <(printf '%s\n' "$expected_class_client") "$CLASS_CLIENT"
check "class server logged: Connection from: <the host's side>:<port> (client-1)" \
    wait_for_re "$CLASS_LOG" "Connection from: [0-9.]+:[0-9]+ \(client-1\)" 10
check "class server logged: client-1 returned for upcall 2: ok" \
    wait_for "$CLASS_LOG" "client-1 returned for upcall 2: ok" 10
echo "quit" >&3
if wait_exit "$server_pid" 20; then
    check "class server exits 0 after quit (got $exit_status)" test "$exit_status" -eq 0
else
    fail "class server did not exit within 20s of 'quit'"
fi
server_pid=""
exec 3>&-

# ---------------------------------------------------------------- 7. the bridge
step "7. ip a show br-upcall"
ip a show br-upcall >"$OUT/ip-a.txt" 2>&1
check "br-upcall has $GATEWAY/24" grep -qF "inet $GATEWAY/24" "$OUT/ip-a.txt"

# ---------------------------------------------------------------- 7b. the README
step "7b. the READMEs' lab samples are this run's output"
# readme_sample NAME [FILE]: the fenced block after `<!-- sample: NAME -->` in FILE (README.md).
readme_sample() {
    awk -v marker="<!-- sample: $1 -->" '
        $0 == marker { found = 1; next }
        found && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }' "${2:-README.md}"
}
# Client ports, interface numbers and MAC addresses differ from run to run; nothing else may.
normalise() { sed -E 's/(172\.28\.0\.[0-9]+):[0-9]+/\1:PORT/g; s/^[0-9]+: /N: /; s/ether [0-9a-f:]+/ether MAC/; s/fe80::[0-9a-f:]+/fe80::X/'; }
for readme in README.md README.id.md; do
    for name in lab-client lab-server lab-bridge; do
        check "$readme has the sample $name" test -n "$(readme_sample "$name" "$readme")"
    done
    check "$readme sample lab-client is client-1's transcript" \
        diff <(readme_sample lab-client "$readme") "$CLIENT1"
    check "$readme sample lab-server is the start of the server's log" \
        diff <(readme_sample lab-server "$readme" | normalise) \
             <(head -n "$(readme_sample lab-server "$readme" | wc -l)" "$SERVER_LOG" | normalise)
    check "$readme sample lab-bridge is what ip a shows" \
        diff <(readme_sample lab-bridge "$readme" | normalise) \
             <(head -n "$(readme_sample lab-bridge "$readme" | wc -l)" "$OUT/ip-a.txt" | normalise)
done

# ---------------------------------------------------------------- 7c. Ctrl-C
step "7c. Ctrl-C on the README's terminal commands leaves nothing running in the containers"
# `script` gives the docker command a terminal, as a student's has; \003 is the Ctrl-C key.
tty_ctrl_c() { # tty_ctrl_c NAME CONTAINER PROCESS COMMAND...: start it, wait for PROCESS, press Ctrl-C
    local name=$1 container=$2 process=$3; shift 3
    rm -f "$OUT/tty-in.fifo"; mkfifo "$OUT/tty-in.fifo"
    exec 7<>"$OUT/tty-in.fifo"
    timeout 60 script -qfec "$*" "$OUT/tty-$name.txt" <"$OUT/tty-in.fifo" >/dev/null 2>&1 &
    local pid=$! running=no
    for _ in $(seq 1 100); do
        timeout 20 docker top "$container" -eo pid,comm | awk -v p="$process" '$2 == p { found = 1 } END { exit !found }' && { running=yes; break; }
        sleep 0.2
    done
    check "$name: $process runs in $container" test "$running" = yes
    sleep 1
    printf '\003' >&7
    wait_exit "$pid" 20 || fail "$name: the docker command did not end on Ctrl-C"
    exec 7>&-
    local left=yes
    for _ in $(seq 1 25); do
        timeout 20 docker top "$container" -eo pid,comm | awk -v p="$process" '$2 == p { found = 1 } END { exit !found }' || { left=no; break; }
        sleep 0.2
    done
    check "$name: after Ctrl-C no $process is left in $container" test "$left" = no
}
tty_ctrl_c servercall upcall-server servercall "${COMPOSE[*]} exec upcall-server servercall"
tty_ctrl_c tcpdump upcall-server tcpdump "${COMPOSE[*]} exec upcall-server tcpdump -i eth0 -U -Z root -w /captures/upcall.pcap tcp port 4141"

# ---------------------------------------------------------------- 8. down
step "8. docker compose -f compose/upcall.yml down"
if timeout 120 "${COMPOSE[@]}" down >"$OUT/down.log" 2>&1; then ok "compose down"; compose_started=no; else fail "compose down failed (see $OUT/down.log)"; fi
left=$(timeout 20 docker ps -a --format '{{.Names}}' | grep -xE 'upcall-server|upcall-client')
check "no container upcall-server or upcall-client is left" test -z "$left"
check "no br-upcall link is left" test ! -e /sys/class/net/br-upcall
