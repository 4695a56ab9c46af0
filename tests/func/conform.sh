#!/bin/sh
# `vmig conform` over every vmig device and over the foreign test server.
#   acc, flowtab, testdev   spawned twice (source and second instance),
#                           --hostile, the kernel's next-step table from
#                           tests/data: exit 0, no FAIL row, every FSM arc
#                           of their flags checked, the round trip equal,
#                           every hostile input refused
#   foreign                 tests/func/foreign_vfu.py, STOP_COPY only and
#                           with --pre-copy: exit 1, and the FAIL rows are
#                           exactly its deliberate deviations (it exits when
#                           asked for a state it did not advertise; it
#                           refuses DEVICE_RESET in STOP), each with its
#                           reason; the JSON report says the same
#   cli                     usage errors exit 2; --socket on a running
#                           server (no spawn) passes
# usage: conform.sh <vmig> <build dir> <python3> <fsm table> <case>
set -u
vmig=$1
build=$2
py=$3
table=$4
what=$5
. "$(dirname "$0")/agent_lib.sh"
# the report is what a failure needs to show
fail() { echo "FAIL: $*" >&2; [ -f "$dir/out" ] && cat "$dir/out" >&2; exit 1; }
# (a calm device: under load conform must still read its PRE_COPY data
# faster than it dirties it, to see "no more for now")
foreign="$py $(dirname "$0")/foreign_vfu.py --socket-path={socket} --state-mib 2 --tick-ms 250"

# conform RC ARGS...: run it, the table in $dir/out, exit status RC
conform() {
    want=$1; shift
    "$vmig" conform "$@" >"$dir/out" 2>"$dir/err"; rc=$?
    [ "$rc" -eq "$want" ] || { cat "$dir/err" >&2; fail "vmig conform $* exited $rc, expected $want"; }
}
rows() { sed -n "s/^$1  //p" "$dir/out"; }
has() { grep -qE "^$1  $2" "$dir/out" || fail "no $1 row '$2'"; }

# a vmig device: everything it advertises passes
vmig_device() { # command arcs
    conform 0 --spawn "$1" --dest-spawn "$1" --hostile --fsm-table "$table"
    [ -z "$(rows FAIL)" ] || fail "FAIL rows: $(rows FAIL)"
    n=$(rows PASS | grep -c '^arc ')
    [ "$n" -eq "$2" ] || fail "$n FSM arcs passed, expected $2"
    has PASS "round trip: the same state"
    has PASS "reset ends a saving session"
    has PASS "combination transitions"
    h=$(rows PASS | grep -c '^hostile: ')
    [ "$h" -ge 20 ] || fail "only $h hostile inputs passed"
    grep -q "^[0-9]* PASS, 0 FAIL" "$dir/out" || fail "no summary"
}

case "$what" in
acc)
    vmig_device "$build/devices/acc/vmig-acc --socket-path={socket}" 9
    has PASS "precopy sizing"
    has PASS "DMA logging"
    ;;
flowtab)
    vmig_device "$build/devices/flowtab/vmig-flowtab --socket-path={socket} --state=4" 15
    has PASS "PRE_COPY: an empty read"
    ;;
testdev)
    vmig_device "$build/tools/vfu-testdev/vfu-testdev --socket-path={socket}" 15
    ;;
foreign)
    # STOP_COPY only
    conform 1 --spawn "$foreign" --dest-spawn "$foreign" --hostile --fsm-table "$table"
    got=$(rows FAIL | tr '\n' '|')
    [ "$got" = "invalid state numbers refused|states not advertised refused|reset in STOP returns to RUNNING|" ] ||
        fail "the FAIL rows are not exactly the foreign server's deviations: $got"
    saw() { grep -A1 -E "^FAIL  $1" "$dir/out" | sed -n 's/^ *saw: *//p'; }
    saw "invalid state numbers refused" | grep -q "exited with status 3.*did not advertise" || fail "no reason for the invalid-state row"
    saw "states not advertised refused" | grep -q "RUNNING_P2P" || fail "no reason for the not-advertised row"
    saw "reset in STOP" | grep -q "refused in STOP: Device or resource busy" || fail "no reason for the reset row"
    n=$(rows PASS | grep -c '^arc ')
    [ "$n" -eq 6 ] || fail "$n FSM arcs passed, expected the 6 of STOP_COPY"
    has PASS "round trip: the same state"
    has SKIP "DMA logging"
    has SKIP "PRE_COPY: an empty read"
    grep -q "started 3 times" "$dir/err" || { cat "$dir/err"; fail "the note on the server's deaths is missing"; }
    # with PRE_COPY, as JSON
    conform 1 --spawn "$foreign --pre-copy" --dest-spawn "$foreign --pre-copy" --hostile --json --fsm-table "$table"
    "$py" - "$dir/out" <<'EOF' || fail "JSON report"
import json, sys
d = json.load(open(sys.argv[1]))
fails = [r["rule"] for r in d["rows"] if r["verdict"] == "FAIL"]
want = ["invalid state numbers refused", "states not advertised refused",
        "reset in STOP returns to RUNNING"]
assert fails == want, fails
assert d["fail"] == 3 and d["pass"] > 20, d
assert d["transport"] == "vfio-user"
rows = {r["rule"]: r for r in d["rows"]}
assert rows["PRE_COPY: an empty read is 'no more for now'"]["verdict"] == "PASS"
assert rows["STOP_COPY -> PRE_COPY refused"]["verdict"] == "PASS"
assert rows["precopy sizing shrinks as data is read"]["verdict"] == "SKIP"
assert all(r["clause"] for r in d["rows"])
EOF
    ;;
cli)
    conform 2
    conform 2 --spawn "true"
    conform 2 --socket x --spawn "y {socket}"
    conform 2 --socket x --fsm-table /nonexistent
    "$build/tools/vfu-testdev/vfu-testdev" --socket-path="$dir/t.sock" 2>/dev/null &
    pids="$pids $!"
    wait_sock "$dir/t.sock"
    conform 0 --socket "$dir/t.sock"
    has SKIP "round trip: restored in a second instance"
    ;;
*)
    fail "unknown case $what"
    ;;
esac
echo "conform $what: ok"
