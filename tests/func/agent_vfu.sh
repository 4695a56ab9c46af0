#!/bin/sh
# The agent with real vfio-user device server processes (vfu-testdev and
# vmig-flowtab, spawned by the agents with --device): a completed migration and back
# (A -> B -> A) with the guest verified and the device RUNNING on the
# destination; then failures, each leaving the source VM running, its
# guest verified and its device RUNNING: the destination refuses the
# device in HELLO, the connection is cut (a TCP relay killed), the
# destination agent is killed, migrate_cancel.
# With "acc": the same with the accelerator (vmig-acc) and the guest's
# workload on it, verified (every request exactly once, checked).
# With "corrupt": one byte of the accelerator's state is flipped on the
# source (VMIG_TEST_CORRUPT_DEVICE_BYTE) during an agent-to-agent
# migration: it fails with an error naming the device, the source keeps
# running with its device RUNNING and its workload verified and moving,
# and a later clean migration succeeds.
# With "zstd": an accelerator migration with multifd-compression zstd over
# three connections: the source says it compressed (fewer bytes on the
# wire than the frames carried), the workload finishes on the destination
# with every request exactly once and its whole result ledger re-checked.
# With "accdone": the accelerator workload outlives the guest program
# (which fills its ledger at once) and still finishes, before and after a
# migration.
# usage: agent_vfu.sh <vmig binary> [testdev|acc|corrupt|accdone|zstd]
set -u
vmig=$1
what=${2:-testdev}
. "$(dirname "$0")/agent_lib.sh"

vm="--ram 16M"
intact() { # name what
    wait_for "$1 to finish its migration" settled "$1"
    qmp "$dir/$1.qmp" '{"execute":"query-status"}' | grep -q '"status": "running"' || fail "$1 not running after $2"
    qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-guest"}' | grep -q '"verified": true' || fail "$1 guest broken after $2"
    out=$(qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-devices"}')
    echo "$out" | grep -q '"transport": "vfio-user"' || fail "$1: no vfio-user device: $out"
    echo "$out" | grep -q '"state": "RUNNING"' || fail "$1 device not RUNNING after $2: $out"
}
# wait_running A: agent A runs its VM and no migration owns its vCPU any
# more (a destination finishes its incoming migration after the source's
# migrate returned)
runs_free() { qmp "$dir/$1.qmp" '{"execute":"query-status"}' | grep -q '"status": "running"' && settled "$1"; }
wait_running() { wait_for "$1 to run its VM after its migration" runs_free "$1"; }
td="--device testdev,size=2 --device flowtab,state=2"
if [ "$what" = testdev ]; then

start dst $((port_base + 1)) --device testdev,size=2,seed=9 --device flowtab,state=2
start src - $td
expect_rc 0 "$vmig" check --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 1))"
expect_rc 0 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 1))" --json
grep -q '"downtime"' "$dir/last.out" || fail "no downtime"
wait_running dst
intact dst "migration"

# and back (A -> B -> A)
start back $((port_base + 2)) $td
expect_rc 0 "$vmig" migrate --qmp "$dir/dst.qmp" --to "127.0.0.1:$((port_base + 2))" --json
wait_running back
intact back "A -> B -> A"

# refused in HELLO: the destination has no such device; nothing stopped
start none $((port_base + 3)) --devices 0
expect_rc 1 "$vmig" check --qmp "$dir/back.qmp" --to "127.0.0.1:$((port_base + 3))"
grep -q "no device named vfu0 here" "$dir/last.out" || fail "check refusal output"
expect_rc 1 "$vmig" migrate --qmp "$dir/back.qmp" --to "127.0.0.1:$((port_base + 3))" --json
intact back "a refusal"

# connection cut: the migration goes through a TCP relay that dies (socat
# relays one connection: one channel)
start dst2 $((port_base + 4)) $td
socat TCP-LISTEN:$((port_base + 5)),bind=127.0.0.1,reuseaddr TCP:127.0.0.1:$((port_base + 4)) 2>/dev/null &
relay=$!
pids="$pids $relay"
wait_for "the relay to listen" listening $((port_base + 5))
"$vmig" migrate --qmp "$dir/back.qmp" --to "127.0.0.1:$((port_base + 5))" --max-bandwidth 4M --channels 1 --json >"$dir/cut.out" 2>&1 &
mpid=$!
wait_for "the migration through the relay to move data" migrating back
kill -9 "$relay"
wait "$mpid"; rc=$?
[ "$rc" -eq 1 ] || { cat "$dir/cut.out"; fail "migrate over a cut connection exited $rc"; }
intact back "a cut connection"

# migrate_cancel mid-transfer
"$vmig" migrate --qmp "$dir/back.qmp" --to "127.0.0.1:$((port_base + 4))" --max-bandwidth 4M --json >"$dir/cancel.out" 2>&1 &
mpid=$!
wait_for "the migration to move data" migrating back
expect_rc 0 "$vmig" cancel --qmp "$dir/back.qmp"
wait "$mpid"; rc=$?
[ "$rc" -eq 1 ] || { cat "$dir/cancel.out"; fail "cancelled migrate exited $rc"; }
intact back "a cancel"

# destination agent killed mid-stream (its device server dies with it)
"$vmig" migrate --qmp "$dir/back.qmp" --to "127.0.0.1:$((port_base + 4))" --max-bandwidth 4M --json >"$dir/kill.out" 2>&1 &
mpid=$!
wait_for "the migration to move data" migrating back
kill -9 "$pid_dst2"
wait "$mpid"; rc=$?
[ "$rc" -eq 1 ] || { cat "$dir/kill.out"; fail "migrate to a killed destination exited $rc"; }
intact back "the destination died"
echo ok
exit 0
fi

# the accelerator (vmig-acc): the guest's workload continues across
# migrations, every request completed exactly once and verified
acc="--device acc"
# The finished workload on agent $1: all $2 requests completed once and
# correctly, and the whole result ledger re-checked there.
check_done() { # name total
    d=$(accel "$1")
    echo "$d" | grep -q "\"completed\": $2," || fail "not every request completed on $1: $d"
    echo "$d" | grep -q '"bad": 0, "duplicates": 0' || fail "wrong or duplicate completions on $1: $d"
    echo "$d" | grep -q '"verified": true' || fail "workload does not verify on $1: $d"
    echo "$d" | grep -q "\"ledger\": {\"entries\": $2, \"checked\": $2, \"mismatches\": 0, \"digests\": true, \"verified\": true" ||
        fail "result ledger not re-checked whole on $1: $d"
}
steps() { # name -> the guest program's step count
    qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-guest"}' | tr -d '\n' |
        sed -n 's/.*"steps": \([0-9]*\).*/\1/p'
}
steps_known() { [ -n "$(steps "$1")" ]; }
# The guest program (the ledger) ends long before the accelerator
# workload: at this --rate the first batch of steps fills the ledger.  The
# guest must still drive its device, on the source and after a migration
# (a finished program used to end the vCPU's device work: the requests in
# flight, a full queue on each pair, were never reaped).
if [ "$what" = accdone ]; then
start fsrc - $acc --acc-requests 20000 --rate 1000000000
start fdst $((port_base + 11)) $acc
acc_mark=0
wait_for "the accelerator workload to start" acc_moving fsrc
wait_for "the guest program's step count" steps_known fsrc
s0=$(steps fsrc)
acc_mark=200
wait_for "the workload to move on with the guest program over" acc_moving fsrc
[ "$(steps fsrc)" = "$s0" ] || fail "the guest program was still running ($s0 then $(steps fsrc) steps): the test proves nothing"
expect_rc 0 "$vmig" migrate --qmp "$dir/fsrc.qmp" --to "127.0.0.1:$((port_base + 11))" --json
wait_running fdst
acc_finish fdst
check_done fdst 20000
[ "$(steps fdst)" = "$s0" ] || fail "the destination's program moved: $s0 then $(steps fdst) steps"
intact fdst "a migration after the guest program ended"
echo ok
exit 0
fi
if [ "$what" = zstd ]; then
start zsrc - $acc --acc-requests 100000
start zdst $((port_base + 12)) $acc
acc_mark=0
wait_for "the accelerator workload to start" acc_moving zsrc
expect_rc 0 "$vmig" migrate --qmp "$dir/zsrc.qmp" --to "127.0.0.1:$((port_base + 12))" --compression zstd --channels 3 --json
z=$(tr -d '\n ' <"$dir/last.out" | sed -n 's/.*"x-vmig-compression":{\([^}]*\)}.*/\1/p')
[ -n "$z" ] || { cat "$dir/last.out"; fail "no x-vmig-compression after a compressed migration"; }
zraw=$(echo "$z" | sed -n 's/.*"raw-bytes":\([0-9]*\).*/\1/p')
zwire=$(echo "$z" | sed -n 's/.*"wire-bytes":\([0-9]*\).*/\1/p')
[ "$zwire" -lt "$zraw" ] || fail "compression did not shrink anything: $z"
echo "compressed: $z"
wait_running zdst
acc_finish zdst
check_done zdst 100000
intact zdst "a compressed migration"
echo ok
exit 0
fi
if [ "$what" = corrupt ]; then
export VMIG_TEST_CORRUPT_DEVICE_BYTE=100
start csrc - $acc --acc-requests 100000
unset VMIG_TEST_CORRUPT_DEVICE_BYTE
start cdst $((port_base + 9)) $acc
start cdst2 $((port_base + 10)) $acc
acc_mark=0
wait_for "the accelerator workload to start" acc_moving csrc
expect_rc 1 "$vmig" migrate --qmp "$dir/csrc.qmp" --to "127.0.0.1:$((port_base + 9))" --json
grep -q "vfu0" "$dir/last.out" || { cat "$dir/last.out"; fail "the corrupt-state error does not name the device"; }
grep -Eqi "corrupt|checksum|bad message|EBADMSG" "$dir/last.out" || { cat "$dir/last.out"; fail "the corrupt-state error does not say the state is corrupt"; }
intact csrc "a corrupted device state"
c0=$(accel csrc)
echo "$c0" | grep -q '"bad": 0, "duplicates": 0' || fail "wrong or duplicate completions after the corrupted migration: $c0"
acc_mark=$(echo "$c0" | sed -n 's/.*"completed": \([0-9]*\).*/\1/p')
wait_for "the workload to move on the source after the corrupted migration" acc_moving csrc
expect_rc 0 "$vmig" migrate --qmp "$dir/csrc.qmp" --to "127.0.0.1:$((port_base + 10))" --json
wait_running cdst2
acc_finish cdst2
check_done cdst2 100000
intact cdst2 "a clean migration after the corrupted one"
echo ok
exit 0
fi
start asrc - $acc --acc-requests 100000
start adst $((port_base + 6)) $acc
start aold $((port_base + 7)) --device acc,qps=2
acc_mark=0
wait_for "the accelerator workload to start" acc_moving asrc
a0=$(accel asrc)
echo "$a0" | grep -q '"verified": true' || fail "accelerator workload broken on the source: $a0"
# refused in HELLO: 2 queue pairs here, 4 on the source
expect_rc 1 "$vmig" check --qmp "$dir/asrc.qmp" --to "127.0.0.1:$((port_base + 7))"
grep -qi "qp-count" "$dir/last.out" || { cat "$dir/last.out"; fail "acc refusal does not name qp-count"; }
expect_rc 1 "$vmig" migrate --qmp "$dir/asrc.qmp" --to "127.0.0.1:$((port_base + 7))" --json
intact asrc "an accelerator refusal"
# cancelled mid-transfer
"$vmig" migrate --qmp "$dir/asrc.qmp" --to "127.0.0.1:$((port_base + 6))" --max-bandwidth 1M --json >"$dir/acancel.out" 2>&1 &
mpid=$!
wait_for "the migration to move data" migrating asrc
expect_rc 0 "$vmig" cancel --qmp "$dir/asrc.qmp"
wait "$mpid"; rc=$?
[ "$rc" -eq 1 ] || { cat "$dir/acancel.out"; fail "cancelled accelerator migrate exited $rc"; }
intact asrc "an accelerator cancel"
# A -> B -> A while the workload runs
expect_rc 0 "$vmig" migrate --qmp "$dir/asrc.qmp" --to "127.0.0.1:$((port_base + 6))" --json
start aback $((port_base + 8)) $acc
wait_running adst
expect_rc 0 "$vmig" migrate --qmp "$dir/adst.qmp" --to "127.0.0.1:$((port_base + 8))" --json
wait_running aback
acc_finish aback
check_done aback 100000
intact aback "A -> B -> A with the accelerator"
echo ok
