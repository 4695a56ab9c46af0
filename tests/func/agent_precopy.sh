#!/bin/sh
# Precopy between two agent processes (loopback TCP) with vmig-flowtab
# devices whose guest traffic runs throughout (every completion checked by
# the guest: flow counters equal to what it sent).
#   precopy    two flowtab devices (same kind, distinct names), a downtime
#              limit the first pass cannot meet: the iteration and the time
#              cap with cap action abort fail with the VM running here; an
#              iteration cap of 2 with stop-copy completes, query-migrate
#              showing 2 precopy iterations and precopy bytes; the
#              destination's guest traffic verifies and keeps moving
#   noprecopy  --no-precopy: stop-and-copy, completed, verified; bad values
#              of every migration option are refused naming the option and
#              change nothing
#   reset      x-vmig-device-reset while the device is in PRE_COPY: policy
#              restart completes (a device restart counted); policy abort
#              fails with the VM running on the source and the destination
#              discarding (a later migration to it completes)
#   mixed      acc (no P2P) + flowtab: refused naming the device and
#              the override; accepted with --allow-mixed-p2p
#   nolog      a device without DMA logging (vfu-testdev --no-dma-log): a
#              warning naming it, guest RAM moves at stop-copy only, the
#              device's state still precopies, completed and verified
#   ack        a corrupted device-state byte (VMIG_TEST_CORRUPT_DEVICE_BYTE)
#              is refused by the destination before switchover, and so is
#              a destination device of another state size: no STOP event,
#              the source never left "running"
# usage: agent_precopy.sh <vmig binary> <case>
set -u
vmig=$1
what=$2
. "$(dirname "$0")/agent_lib.sh"
vm="--ram 32M"
# one number from a flat JSON text: num KEY TEXT
num() { echo "$2" | tr -d '\n' | sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p"; }
# the guest's flowtab report of device NAME on agent A
ftrep() { qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-guest"}' | tr -d '\n' | sed -n "s/.*\"flowtab\": \[[^]]*\({\"name\": \"$2\"[^}]*}\).*/\1/p"; }
# ft_started A D: the guest's traffic on device D of agent A has begun
ft_started() { ftrep "$1" "$2" | grep -q '"started": true'; }
# ft_moved A D: more completions on device D of agent A than $ft_mark
ft_moved() {
    c1=$(num completed "$(ftrep "$1" "$2")")
    [ "${c1:-0}" -gt "${ft_mark:-0}" ]
}
# the guest on A verifies and its traffic on device D moves
traffic() { # agent device what
    wait_for "$1 to finish its migration" settled "$1"
    wait_for "traffic on $1/$2" ft_started "$1" "$2"
    r0=$(ftrep "$1" "$2")
    [ -n "$r0" ] || fail "$1/$2: no flowtab report after $3 (x-vmig-query-guest did not answer within ${QMP_TIMEOUT:-150} s)"
    echo "$r0" | grep -q '"verified": true' || fail "$1/$2: flowtab traffic not verified after $3: $r0 (guest: $(qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-guest"}' | tail -n 1))"
    echo "$r0" | grep -q '"bad": 0' || fail "$1/$2: wrong completions after $3: $r0"
    ft_mark=$(num completed "$r0")
    wait_for "$1/$2: traffic to move after $3 (from $ft_mark)" ft_moved "$1" "$2"
    g=$(qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-guest"}' | tr -d '\n')
    echo "$g" | grep -q '"return"' || fail "$1: x-vmig-query-guest did not answer within ${QMP_TIMEOUT:-150} s after $3: $g"
    echo "$g" | grep -q '"verified": true' || fail "$1: guest broken after $3: $g"
}
devstate() { # agent device -> its migration state
    qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-devices"}' | tr -d '\n' | sed -n "s/.*\"name\": \"$2\"[^}]*\"state\": \"\([A-Z_0-9]*\)\".*/\1/p"
}
precopying() { [ "$(devstate "$1" "$2")" = PRE_COPY ]; }

case "$what" in
precopy)
    ft="--device flowtab,state=8,name=ft0 --device flowtab,state=8,name=ft1"
    # the guest dirties about one page per step: 100000 steps/s make the
    # first pass leave far more than 1 ms of dirty pages however fast it is
    # (64M of RAM: the ledger program keeps running for 20 s)
    vm="--ram 64M --rate 100000"
    start dst $((port_base + 1)) $ft
    start src - $ft
    traffic src ft0 "start"
    traffic src ft1 "start"
    # a downtime limit the first pass cannot meet (the pages the guest and
    # the devices dirtied while all of RAM and the device states went out
    # take well over 1 ms); later, shorter passes may meet it, so the caps
    # are set to end precopy after the first pass (abort: the VM stays
    # here) or the second (stop-copy: switch over)
    expect_rc 1 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 1))" --downtime-limit 1 --max-iterations 1 --cap-action abort --json
    grep -q "did not converge" "$dir/last.out" || { cat "$dir/last.out"; fail "cap abort does not say precopy did not converge"; }
    running src "a precopy cap abort"
    traffic src ft0 "a precopy cap abort"
    # the time cap likewise
    expect_rc 1 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 1))" --downtime-limit 1 --max-iterations 100000 --max-precopy-time 1 --cap-action abort --json
    grep -q "did not converge" "$dir/last.out" || { cat "$dir/last.out"; fail "time cap abort does not say precopy did not converge"; }
    running src "a precopy time cap abort"
    # the parameters persist in the agent: lift the time cap set above
    expect_rc 0 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 1))" --downtime-limit 1 --max-iterations 2 --max-precopy-time 0 --cap-action stop-copy --json
    f=$(final)
    echo "$f" | grep -q '"status":"completed"' || fail "not completed: $f"
    echo "$f" | grep -q '"enabled":true' || fail "precopy not used: $f"
    it=$(echo "$f" | sed -n 's/.*"iterations":\([0-9]*\).*/\1/p')
    pb=$(echo "$f" | sed -n 's/.*"x-vmig-precopy":{[^}]*"precopy-bytes":\([0-9]*\).*/\1/p')
    [ "${it:-0}" -eq 2 ] || fail "not the 2 precopy iterations of the cap: $f"
    [ "${pb:-0}" -gt 0 ] || fail "no precopy bytes: $f"
    echo "$f" | grep -q '"forced-switchover":true' || fail "a switchover by the cap is not flagged forced: $f"
    grep -q "warning: precopy did not converge: the cap" "$dir/last.out" || { cat "$dir/last.out"; fail "the CLI does not say the cap switched over"; }
    echo "$f" | grep -q '"name":"ft0"' && echo "$f" | grep -q '"name":"ft1"' || fail "devices missing: $f"
    running dst "the migration"
    traffic dst ft0 "precopy migration"
    traffic dst ft1 "precopy migration"
    [ "$(devstate dst ft0)" = RUNNING ] || fail "ft0 not RUNNING on the destination"
    ;;
noprecopy)
    ft="--device flowtab,state=4"
    start dst $((port_base + 2)) $ft
    start src - $ft
    # bad values: refused, naming the option, nothing changed
    p0=$(qmp "$dir/src.qmp" '{"execute":"query-migrate-parameters"}' | tail -n 1)
    for bad in '"x-vmig-precopy-cap-action": "later"' '"x-vmig-reset-policy": 1' \
        '"x-vmig-precopy-max-iterations": -1' '"downtime-limit": 5, "x-vmig-max-restarts": 99999' \
        '"x-vmig-precopy-max-time": -5' '"x-vmig-precopy": "no"'; do
        out=$(qmp "$dir/src.qmp" "{\"execute\":\"migrate-set-parameters\",\"arguments\":{$bad}}" | tail -n 1)
        key=$(echo "$bad" | sed 's/.*"\([a-z0-9-]*\)": [^,]*$/\1/')
        echo "$out" | grep -q '"error"' || fail "accepted $bad: $out"
        echo "$out" | grep -q "$key" || fail "error for $bad does not name $key: $out"
    done
    [ "$(qmp "$dir/src.qmp" '{"execute":"query-migrate-parameters"}' | tail -n 1)" = "$p0" ] || fail "a refused value changed the parameters"
    expect_rc 2 "$vmig" migrate --qmp "$dir/src.qmp" --to 127.0.0.1:1 --cap-action later
    grep -q -- "--cap-action" "$dir/last.out" || fail "CLI error does not name --cap-action"
    expect_rc 2 "$vmig" migrate --qmp "$dir/src.qmp" --to 127.0.0.1:1 --reset-policy x
    grep -q -- "--reset-policy" "$dir/last.out" || fail "CLI error does not name --reset-policy"
    expect_rc 2 "$vmig" migrate --qmp "$dir/src.qmp" --to 127.0.0.1:1 --max-iterations lots
    grep -q -- "--max-iterations" "$dir/last.out" || fail "CLI error does not name --max-iterations"
    expect_rc 2 "$vmig" run --qmp "$dir/x.qmp" --device flowtab,name=a --device testdev,name=a
    grep -q "two --device named 'a'" "$dir/last.out" || fail "duplicate names not refused"
    traffic src vfu0 "refused parameters"
    # the test-only unsafe one-phase stop: loud, and visible in the parameters
    qmp "$dir/src.qmp" '{"execute":"query-migrate-parameters"}' | grep -q one-phase && fail "one-phase stop on without the variable"
    export VMIG_TEST_ONE_PHASE_STOP=1
    start one - --devices 1
    unset VMIG_TEST_ONE_PHASE_STOP
    grep -q "VMIG_TEST_ONE_PHASE_STOP=1: TEST ONLY, UNSAFE" "$dir/one.log" || fail "no warning for VMIG_TEST_ONE_PHASE_STOP"
    qmp "$dir/one.qmp" '{"execute":"query-migrate-parameters"}' | grep -q '"x-vmig-test-one-phase-stop": true' || fail "one-phase stop not set"
    qmp "$dir/one.qmp" '{"execute":"quit"}' >/dev/null
    expect_rc 0 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 2))" --no-precopy --json
    f=$(final)
    echo "$f" | grep -q '"status":"completed"' || fail "not completed: $f"
    echo "$f" | grep -q '"enabled":false' || fail "precopy used despite --no-precopy: $f"
    echo "$f" | grep -q '"iterations":0' || fail "precopy iterations with --no-precopy: $f"
    echo "$f" | grep -q '"forced-switchover":false' || fail "a stop-and-copy migration flagged forced: $f"
    grep -q "did not converge" "$dir/last.out" && fail "a stop-and-copy migration warned of a cap: $(cat "$dir/last.out")"
    running dst "a stop-and-copy migration"
    traffic dst vfu0 "a stop-and-copy migration"
    ;;
reset)
    ft="--device flowtab,state=8"
    start dst $((port_base + 3)) $ft
    start src - $ft
    wait_for "traffic on src/vfu0" ft_started src vfu0
    # abort: the reset ends the migration; the VM stays here, the
    # destination discards and stays ready
    "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 3))" --max-bandwidth 4M --reset-policy abort --json >"$dir/abort.out" 2>&1 &
    mpid=$!
    wait_for "the device to reach PRE_COPY" precopying src vfu0
    qmp "$dir/src.qmp" '{"execute":"x-vmig-device-reset","arguments":{"device":"vfu0"}}' | grep -q '"return"' || fail "x-vmig-device-reset refused"
    qmp "$dir/src.qmp" '{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":0}}' | grep -q '"return"' || fail "cannot lift max-bandwidth"
    wait "$mpid"; rc=$?
    [ "$rc" -eq 1 ] || { cat "$dir/abort.out"; fail "migrate with reset-policy abort exited $rc"; }
    grep -q '"status":"failed"' "$dir/abort.out" || { cat "$dir/abort.out"; fail "not failed"; }
    running src "a reset with policy abort"
    [ "$(devstate src vfu0)" = RUNNING ] || fail "source device not RUNNING after the abort"
    traffic src vfu0 "a reset with policy abort"
    r=$(ftrep src vfu0)
    [ "$(num resets "$r")" -ge 1 ] || fail "the guest did not see the reset: $r"
    qmp "$dir/dst.qmp" '{"execute":"query-status"}' | grep -q '"status": "inmigrate"' || fail "destination did not discard"
    # restart: the device's precopy starts over, the migration completes
    "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 3))" --max-bandwidth 4M --max-iterations 8 --reset-policy restart --json >"$dir/restart.out" 2>&1 &
    mpid=$!
    wait_for "the device to reach PRE_COPY" precopying src vfu0
    qmp "$dir/src.qmp" '{"execute":"x-vmig-device-reset","arguments":{"device":"vfu0"}}' | grep -q '"return"' || fail "x-vmig-device-reset refused"
    # the reset is in: full speed from now on (max-bandwidth applies at once)
    qmp "$dir/src.qmp" '{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":0}}' | grep -q '"return"' || fail "cannot lift max-bandwidth"
    wait "$mpid"; rc=$?
    [ "$rc" -eq 0 ] || { cat "$dir/restart.out"; fail "migrate with reset-policy restart exited $rc"; }
    f=$(tail -n 1 "$dir/restart.out")
    echo "$f" | grep -q '"device-restarts":[1-9]' || fail "no device restart counted: $f"
    running dst "a restarted precopy"
    traffic dst vfu0 "a restarted precopy"
    qmp "$dir/src.qmp" '{"execute":"x-vmig-device-reset","arguments":{"device":"nosuch"}}' >/dev/null 2>&1 # source may be gone
    qmp "$dir/dst.qmp" '{"execute":"x-vmig-device-reset","arguments":{"device":"nosuch"}}' | grep -q "no vfio-user device named 'nosuch'" || fail "unknown device not refused"
    ;;
mixed)
    two="--device acc --device flowtab,state=4"
    start dst $((port_base + 4)) $two
    start src - $two
    wait_for "traffic on src/vfu1" ft_started src vfu1
    expect_rc 1 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 4))" --json
    grep -q "vfu0" "$dir/last.out" || { cat "$dir/last.out"; fail "refusal does not name the device"; }
    grep -q "allow-mixed-p2p" "$dir/last.out" || { cat "$dir/last.out"; fail "refusal does not name the override"; }
    running src "a mixed-P2P refusal"
    traffic src vfu1 "a mixed-P2P refusal"
    expect_rc 0 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 4))" --allow-mixed-p2p --json
    final | grep -q '"status":"completed"' || fail "not completed: $(final)"
    running dst "a mixed-P2P migration"
    traffic dst vfu1 "a mixed-P2P migration"
    qmp "$dir/dst.qmp" '{"execute":"x-vmig-query-guest"}' | grep -q '"accelerator"' || fail "no accelerator workload on the destination"
    ;;
nolog)
    # a device that cannot log its DMA: guest RAM is not precopied (all of
    # it moves while the VM is paused), device state still is
    start src - --device testdev,no-dma-log
    start dst $((port_base + 6)) --device testdev
    grep -q "vfu0: the device cannot log its DMA writes to guest RAM" "$dir/src.log" || fail "no warning naming the device"
    qmp "$dir/src.qmp" '{"execute":"query-migrate-parameters"}' | grep -q '"x-vmig-ram-precopy": false' || fail "RAM precopy still on"
    expect_rc 0 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 6))" --json
    f=$(final)
    echo "$f" | grep -q '"status":"completed"' || fail "not completed: $f"
    echo "$f" | grep -q '"dirty-sync-count":1' || fail "RAM moved in more than one pass: $f"
    nb=$(echo "$f" | sed -n 's/.*"normal-bytes":\([0-9]*\).*/\1/p')
    sb=$(echo "$f" | sed -n 's/.*"stopcopy-bytes":\([0-9]*\).*/\1/p')
    [ "${nb:-0}" -gt 0 ] && [ "${sb:-0}" -ge "$nb" ] || fail "guest RAM did not move at stop-copy ($sb < $nb): $f"
    echo "$f" | grep -q '"name":"vfu0","state":"STOP","transferred":[0-9]*,"config-bytes":[0-9]*,"precopy-bytes":[1-9]' || fail "device state not precopied: $f"
    running dst "a migration without RAM precopy"
    qmp "$dir/dst.qmp" '{"execute":"x-vmig-query-guest"}' | grep -q '"verified": true' || fail "guest broken on the destination"
    ;;
ack)
    ft="--device flowtab,state=4"
    export VMIG_TEST_CORRUPT_DEVICE_BYTE=100
    start src - $ft
    unset VMIG_TEST_CORRUPT_DEVICE_BYTE
    start dst $((port_base + 5)) $ft
    wait_for "traffic on src/vfu0" ft_started src vfu0
    expect_rc 1 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 5))" --json
    grep -q '"event":"STOP"' "$dir/last.out" && { cat "$dir/last.out"; fail "the source paused its VM before the destination acked"; }
    grep -q '"event":"MIGRATION","data":{"status":"active"}' "$dir/last.out" || { cat "$dir/last.out"; fail "no MIGRATION events followed"; }
    grep -q '"status":"failed"' "$dir/last.out" || { cat "$dir/last.out"; fail "not failed"; }
    grep -q '"enabled":true' "$dir/last.out" || { cat "$dir/last.out"; fail "precopy was not used"; }
    grep -q "vfu0" "$dir/last.out" || { cat "$dir/last.out"; fail "the error does not name the device"; }
    running src "a refused switchover"
    traffic src vfu0 "a refused switchover"
    # an incompatible destination device (another state size): refused
    # before any downtime too
    start big $((port_base + 7)) --device flowtab,state=8
    expect_rc 1 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 7))" --json
    grep -q '"event":"STOP"' "$dir/last.out" && { cat "$dir/last.out"; fail "the source paused its VM for an incompatible destination"; }
    grep -q "vfu0" "$dir/last.out" || { cat "$dir/last.out"; fail "the refusal does not name the device"; }
    running src "an incompatible destination"
    traffic src vfu0 "an incompatible destination"
    ;;
*)
    echo "unknown case $what" >&2; exit 2 ;;
esac
echo ok
