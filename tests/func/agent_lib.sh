# Shared by the agent functional tests (sourced; POSIX sh).  Before
# sourcing: vmig (the agent binary).  After: set vm (the agents' VM
# options) and port_base.  QMP_TIMEOUT: seconds socat waits for a reply
# (default 2).  KEEP=1 keeps the temporary directory for a post-mortem.
dir=$(mktemp -d)
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
wait_sock() { i=0; while [ ! -S "$1" ]; do i=$((i + 1)); [ $i -lt 200 ] || fail "no socket $1"; sleep 0.05; done; }
running() { qmp "$dir/$1.qmp" '{"execute":"query-status"}' | grep -q '"status": "running"' || fail "$1 not running after $2"; }
final() { tail -n 1 "$dir/last.out"; } # migrate --json's query-migrate
qmp() { printf '{"execute":"qmp_capabilities"}\n%s\n' "$2" | socat -t "${QMP_TIMEOUT:-2}" - UNIX-CONNECT:"$1"; }
start() { # name port|- extra...: an agent; "-" runs a VM, a port receives
    n=$1; p=$2; shift 2
    if [ "$p" = "-" ]; then
        "$vmig" run --qmp "$dir/$n.qmp" $vm "$@" 2>"$dir/$n.log" &
    else
        "$vmig" receive --qmp "$dir/$n.qmp" --listen "127.0.0.1:$p" $vm "$@" 2>"$dir/$n.log" &
    fi
    pids="$pids $!"
    eval "pid_$n=$!"
    wait_sock "$dir/$n.qmp"
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
