# Shared by the agent functional tests (sourced; POSIX sh).  Before
# sourcing: vmig (the agent binary).  After: set vm (the agents' VM
# options).  QMP_TIMEOUT: seconds socat waits for a reply
# (default 150: the agent closes the connection once it answered, so this
# only bounds a slow answer on a loaded machine; x-vmig-query-guest
# replays the guest's whole ledger, 3 s of CPU for a full 64M guest in
# the ASan build, which took over 30 s at a load of 25 on two cores and
# came back empty: "guest broken" without a reply).  WAIT_SECS: deadline of
# wait_for (default 120).  KEEP=1 keeps the temporary directory for a
# post-mortem.
dir=$(mktemp -d)
# This script's loopback ports: port_base + 0..15.  A block of 16 per
# process id, so scripts that ctest starts together (consecutive pids)
# never share a port, all below the kernel's ephemeral range (32768).
port_base=$((20000 + ($$ % 797) * 16))
export TMPDIR="$dir" # the agents' device socket directories go here too
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    [ -n "${KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$dir"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done; exit 1; }
expect_rc() { want=$1; shift; "$@" >"$dir/last.out" 2>&1; rc=$?; [ "$rc" -eq "$want" ] || { cat "$dir/last.out" >&2; fail "'$*' exited $rc, expected $want"; }; }
# wait_sock PATH: a socket appears at PATH
wait_sock() { wait_for "a socket at $1" test -S "$1"; }
# up PID SOCKET: the process listens on SOCKET (fails at once if it died)
up() { [ -S "$2" ] && return 0; kill -0 "$1" 2>/dev/null || fail "process $1 exited before listening on $2"; return 1; }
qmp() { printf '{"execute":"qmp_capabilities"}\n%s\n' "$2" | socat -t "${QMP_TIMEOUT:-150}" - UNIX-CONNECT:"$1"; }
# wait_for WHAT CMD...: run CMD until it succeeds; after WAIT_SECS fail
# naming WHAT.  Tests wait on conditions like this, never for a fixed time.
wait_for() {
    what=$1
    shift
    end=$(($(date +%s) + ${WAIT_SECS:-120}))
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || fail "timed out waiting for $what"
        sleep 0.05
    done
}
# settled A: no migration owns agent A's vCPU (its guest can be inspected)
settled() { ! qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-guest"}' | grep -q '"busy": true'; }
# running A WHAT: agent A runs its VM (once no migration owns it)
running() {
    wait_for "$1 to finish its migration" settled "$1"
    qmp "$dir/$1.qmp" '{"execute":"query-status"}' | grep -q '"status": "running"' || fail "$1 not running after $2"
}
final() { tail -n 1 "$dir/last.out"; } # migrate --json's query-migrate
# migrating A: agent A's outgoing migration is moving bulk data
migrating() { qmp "$dir/$1.qmp" '{"execute":"query-migrate"}' | grep -q '"status": "active"'; }
# listening PORT: something listens on 127.0.0.1:PORT (not probed by
# connecting: a one-shot relay would take the probe for its client)
listening() { grep -qi ":$(printf '%04X' "$1") 00000000:0000 0A" /proc/net/tcp; }
# accel A: agent A's accelerator report ("started", "completed", ...)
accel() {
    qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-guest"}' | tr -d '\n' |
        sed -n 's/.*"accelerator": {\([^}]*\)}.*/\1/p'
}
acc_done() { accel "$1" | sed -n 's/.*"completed": \([0-9]*\).*/\1/p'; }
# acc_moving A: agent A's accelerator workload has started and completed
# more requests than $acc_mark (set it first), or finished
acc_moving() {
    a=$(accel "$1")
    echo "$a" | grep -q '"finished": true' && return 0
    n=$(echo "$a" | sed -n 's/.*"completed": \([0-9]*\).*/\1/p')
    [ "${n:-0}" -gt "${acc_mark:-0}" ]
}
# acc_finish A: wait until agent A's accelerator workload finished; fail
# only when it made no progress for 60 s (a loaded machine is slow, a
# stuck workload does not move at all)
acc_finish() {
    last=-1
    since=$(date +%s)
    while :; do
        a=$(accel "$1")
        echo "$a" | grep -q '"finished": true' && return 0
        n=$(echo "$a" | sed -n 's/.*"completed": \([0-9]*\).*/\1/p')
        if [ "${n:-0}" -gt "$last" ]; then
            last=${n:-0}
            since=$(date +%s)
        fi
        [ $(($(date +%s) - since)) -lt 60 ] || fail "accelerator workload stopped making progress: $a"
        sleep 0.2
    done
}
start() { # name port|- extra...: an agent; "-" runs a VM, a port receives
    n=$1; p=$2; shift 2
    if [ "$p" = "-" ]; then
        "$vmig" run --qmp "$dir/$n.qmp" $vm "$@" 2>"$dir/$n.log" &
    else
        "$vmig" receive --qmp "$dir/$n.qmp" --listen "127.0.0.1:$p" $vm "$@" 2>"$dir/$n.log" &
    fi
    pids="$pids $!"
    eval "pid_$n=$!"
    wait_for "$n to listen on $dir/$n.qmp" up "$!" "$dir/$n.qmp"
}
# The accelerator (vmig-acc) workload of agent $1: its counters, e.g.
# "completed": N, "finished": true, "verified": true, "bad": 0, ...
accel() { # name -> prints "completed finished verified bad dup"
    qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-guest"}' | tr -d '\n' |
        sed -n 's/.*"accelerator": {\([^}]*\)}.*/\1/p'
}
# Wait until the workload on agent $1 finishes.  It runs at whatever
# speed the machine allows, so the deadline is on progress: fail when the
# completed count was read and has not moved for 30 s (a query that gets
# no answer on a loaded machine proves nothing either way).
wait_finished() { # name
    last=-1; since=$(date +%s)
    while :; do
        a=$(accel "$1")
        echo "$a" | grep -q '"finished": true' && return 0
        n=$(echo "$a" | sed -n 's/.*"completed": \([0-9]*\).*/\1/p')
        if [ -n "$n" ] && [ "$n" != "$last" ]; then last=$n; since=$(date +%s); fi
        [ $(($(date +%s) - since)) -lt 30 ] || fail "accelerator workload did not finish (no progress for 30 s): $a"
        sleep 0.1
    done
}
