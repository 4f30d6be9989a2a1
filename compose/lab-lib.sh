# shellcheck shell=bash disable=SC2034  # exit_status is read by the scripts that source this
# compose/lab-lib.sh - the bounded waits shared by compose/lab-check.sh and pcaps/capture.sh.
# Sourced, not run. Every wait has a limit in seconds: a lab script must never hang.

# wait_for FILE TEXT SECONDS: until FILE contains TEXT (a fixed string), at most SECONDS.
wait_for() {
    local file=$1 text=$2 deadline=$(( $(date +%s) + $3 ))
    until grep -qF -- "$text" "$file" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
# wait_for_re FILE REGEX SECONDS: the same with an extended regular expression.
wait_for_re() {
    local file=$1 re=$2 deadline=$(( $(date +%s) + $3 ))
    until grep -qE -- "$re" "$file" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
# wait_exit PID SECONDS: until the background job PID ends, at most SECONDS; then its exit
# status is in $exit_status (wait alone could block forever).
wait_exit() {
    local pid=$1 deadline=$(( $(date +%s) + $2 ))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then exit_status=timeout; return 1; fi
        sleep 0.2
    done
    wait "$pid"; exit_status=$?
    return 0
}
show() { # show FILE: a file's text, indented, for the failure report and verbose mode
    printf -- '---- %s\n' "$1"
    if [ -s "$1" ]; then tr '\r' '\n' <"$1" | sed 's/^/    /'; else echo '    (empty or missing)'; fi
}
