#!/bin/sh
# The agent migrates a vfio-user device it did not write: the foreign
# test server tests/func/foreign_vfu.py (written from the spec with its
# own codec: STOP_COPY only unless --pre-copy, no vmig extensions, no DMA
# logging, MIG_DATA_READ replies padded, DEVICE_RESET refused in STOP, and
# exit status 3 if ever asked for a state it did not advertise), connected
# with --device socket=PATH, host to host over loopback TCP.  Every
# foreign server must end with status 0 (SIGTERM), so none was asked for
# a state it did not offer, and the digest it reports on restore must
# equal the one its source reported on save.
#   stopcopy   foreign (STOP_COPY only) beside a vmig testdev: refused by
#              the mixed-P2P rule naming the foreign device and the
#              override; with --allow-mixed-p2p completed (the testdev
#              precopies, the foreign device moves at stop-copy), digest
#              equal, guest verified on the destination
#   precopy    both with --pre-copy: the foreign device's state precopies
#              (guest RAM does not: it cannot log DMA), digest equal
#   noprecopy  --no-precopy: stop-and-copy of the same, digest equal
#   refuse     two foreign devices; a corrupted byte of the first's state
#              is refused by the destination device (digest check on
#              RESUMING -> STOP), the source keeps running; then a
#              destination whose second device has another state size:
#              the first reached STOP and its DEVICE_RESET is refused
#              there - a clear error naming the device and the state, no
#              crash or hang; the backend walks it to RUNNING and resets
#              it there; then a good destination: completed, digests
#              equal
# usage: agent_foreign.sh <vmig binary> <python3> <case>
set -u
vmig=$1
py=$2
what=$3
QMP_TIMEOUT=5
. "$(dirname "$0")/agent_lib.sh"
vm="--ram 32M"
foreign="$(dirname "$0")/foreign_vfu.py"
fpids=""

fserver() { # name extra...: a foreign server on $dir/NAME.sock
    n=$1; shift
    "$py" "$foreign" --socket-path="$dir/$n.sock" --report="$dir/$n.rep" "$@" 2>"$dir/$n.log" &
    eval "fpid_$n=$!"
    fpids="$fpids $n"
    pids="$pids $!"
    wait_sock "$dir/$n.sock"
}
# every foreign server ends with status 0 on SIGTERM (3: it was asked for
# a state it did not advertise)
fstop_all() {
    for n in $fpids; do
        eval "p=\$fpid_$n"
        kill -TERM "$p" 2>/dev/null
        wait "$p"; rc=$?
        [ "$rc" -eq 0 ] || fail "foreign server $n exited $rc: $(tail -n 3 "$dir/$n.log")"
        ! grep -q "did not advertise" "$dir/$n.log" || fail "foreign server $n was asked for a state it did not advertise"
    done
    fpids=""
}
lastrep() { sed -n "s/^$2 //p" "$dir/$1.rep" 2>/dev/null | tail -n 1; }
same_state() { # source-server dest-server
    s=$(lastrep "$1" save); r=$(lastrep "$2" restore)
    [ -n "$s" ] || fail "$1 reported no save"
    [ "$s" = "$r" ] || fail "$2 restored digest '$r', $1 saved '$s'"
}
verified() { # agent what: the guest's ledger replays, and it moves
    i=0
    while :; do
        g=$(qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-guest"}' | tail -n 1)
        echo "$g" | grep -q '"busy": true' || break
        i=$((i + 1)); [ $i -lt 50 ] || fail "$1: guest busy after $2"; sleep 0.1
    done
    echo "$g" | grep -q '"verified": true' || fail "$1: guest not verified after $2: $g"
    s0=$(echo "$g" | sed -n 's/.*"steps": \([0-9]*\).*/\1/p')
    sleep 0.3
    s1=$(qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-guest"}' | tail -n 1 | sed -n 's/.*"steps": \([0-9]*\).*/\1/p')
    [ "${s1:-0}" -gt "${s0:-0}" ] || fail "$1: the guest does not run after $2 ($s0 -> $s1)"
}
devfield() { # agent device key: a string field of x-vmig-query-devices
    qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-devices"}' | tr -d '\n' |
        sed -n "s/.*\"name\": \"$2\"[^}]*\"$3\": \"\([^\"]*\)\".*/\1/p"
}

# migrate src to PORT (options after), completed; the foreign servers'
# digests equal; the destination runs a verified guest
migrated() { # port src-server dst-server dst-agent options...
    p=$1; s=$2; d=$3; a=$4; shift 4
    expect_rc 0 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$p" "$@" --json
    f=$(final)
    echo "$f" | grep -q '"status":"completed"' || fail "not completed: $f"
    same_state "$s" "$d"
    running "$a" "the migration"
    verified "$a" "the migration"
}
wait_state() { # agent device state what: the device reaches STATE
    i=0
    while [ "$(devfield "$1" "$2" state)" != "$3" ]; do
        i=$((i + 1)); [ $i -lt 100 ] || fail "$1/$2 not $3 after $4: $(devfield "$1" "$2" state)"; sleep 0.1
    done
}

case "$what" in
stopcopy)
    fserver fa --seed 5
    fserver fb --seed 9
    start src - --device "socket=$dir/fa.sock" --device testdev
    start dst $((port_base + 1)) --device "socket=$dir/fb.sock" --device testdev
    [ "$(devfield src vfu0 migration-flags)" = STOP_COPY ] || fail "flags of the foreign device: $(devfield src vfu0 migration-flags)"
    [ "$(devfield src vfu0 state)" = RUNNING ] || fail "foreign device not RUNNING at start"
    # the mixed-P2P rule: the foreign device has no P2P
    expect_rc 1 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 1))" --json
    grep -q "vfu0" "$dir/last.out" && grep -q "allow-mixed-p2p" "$dir/last.out" || { cat "$dir/last.out"; fail "the mixed-P2P refusal does not name the device and the override"; }
    running src "the mixed-P2P refusal"
    migrated $((port_base + 1)) fa fb dst --allow-mixed-p2p
    echo "$f" | grep -q '"name":"vfu0","state":"STOP","transferred":[1-9][0-9]*,"config-bytes":[0-9]*,"precopy-bytes":0,' || fail "the foreign device did not move (at stop-copy only): $f"
    echo "$f" | grep -q '"name":"vfu1","state":"STOP","transferred":[0-9]*,"config-bytes":[0-9]*,"precopy-bytes":[1-9]' || fail "the testdev did not precopy: $f"
    wait_state dst vfu0 RUNNING "the migration"
    fstop_all
    ;;
precopy)
    fserver fa --seed 7 --pre-copy
    fserver fb --seed 8 --pre-copy
    start src - --device "socket=$dir/fa.sock" --device testdev
    start dst $((port_base + 2)) --device "socket=$dir/fb.sock" --device testdev
    [ "$(devfield src vfu0 migration-flags)" = "STOP_COPY|PRE_COPY" ] || fail "flags: $(devfield src vfu0 migration-flags)"
    grep -q "vfu0: the device cannot log its DMA writes" "$dir/src.log" || fail "no warning that the foreign device cannot log DMA"
    sleep 0.3
    migrated $((port_base + 2)) fa fb dst --allow-mixed-p2p
    echo "$f" | grep -q '"enabled":true' || fail "precopy not used: $f"
    echo "$f" | grep -q '"dirty-sync-count":1' || fail "guest RAM precopied without DMA logging: $f"
    echo "$f" | grep -q '"name":"vfu0","state":"STOP","transferred":[0-9]*,"config-bytes":[0-9]*,"precopy-bytes":[1-9]' || fail "the foreign device did not precopy: $f"
    fstop_all
    ;;
noprecopy)
    fserver fa --seed 3 --pre-copy --state-mib 2
    fserver fb --seed 4 --pre-copy --state-mib 2
    start src - --device "socket=$dir/fa.sock"
    start dst $((port_base + 3)) --device "socket=$dir/fb.sock"
    migrated $((port_base + 3)) fa fb dst --no-precopy
    echo "$f" | grep -q '"enabled":false' || fail "precopy used despite --no-precopy: $f"
    echo "$f" | grep -q '"precopy-bytes":0,' || fail "precopy bytes with --no-precopy: $f"
    fstop_all
    ;;
refuse)
    fserver sa --seed 11
    fserver sb --seed 12 --state-mib 2
    fserver da --seed 13
    fserver db --seed 14 --state-mib 1
    fserver ea --seed 15
    fserver eb --seed 16 --state-mib 2
    two="--allow-mixed-p2p"
    export VMIG_TEST_CORRUPT_DEVICE_BYTE=5000
    start src - --device "socket=$dir/sa.sock" --device "socket=$dir/sb.sock"
    unset VMIG_TEST_CORRUPT_DEVICE_BYTE
    start dst $((port_base + 4)) --device "socket=$dir/da.sock" --device "socket=$dir/db.sock"
    # 1: vfu0's state arrives with a flipped byte: its device refuses it
    expect_rc 1 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 4))" $two --json
    grep -q "vfu0" "$dir/last.out" || { cat "$dir/last.out"; fail "the refused state does not name the device"; }
    grep -q "inconsistent" "$dir/da.log" || fail "the destination device did not find the state inconsistent"
    running src "a refused device state"
    verified src "a refused device state"
    wait_state src vfu0 RUNNING "the rollback"
    wait_state dst vfu0 RUNNING "refusing its state (reset)"
    # 2: vfu1 has another state size here: vfu0 passed validation (STOP)
    # when vfu1 failed; the destination resets both, vfu0's server refuses
    # in STOP - an error naming it and the state, nothing hangs
    expect_rc 1 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 4))" $two --json
    grep -q "vfu1" "$dir/last.out" || { cat "$dir/last.out"; fail "the refusal does not name vfu1"; }
    wait_state dst vfu1 RUNNING "refusing its state (reset)"
    grep -q "vfu0: DEVICE_RESET refused in STOP" "$dir/dst.log" || fail "no error naming the device and the state of the refused reset"
    grep -q "vfu0: reset refused in STOP; moving it to RUNNING" "$dir/dst.log" || fail "the backend did not walk the device to RUNNING instead"
    wait_state dst vfu0 RUNNING "a refused reset (walked to RUNNING and reset there)"
    running src "a failed validation at the destination"
    verified src "a failed validation at the destination"
    qmp "$dir/dst.qmp" '{"execute":"query-status"}' | grep -q '"status"' || fail "the destination agent does not answer"
    # 3: a good destination
    start dst2 $((port_base + 5)) --device "socket=$dir/ea.sock" --device "socket=$dir/eb.sock"
    migrated $((port_base + 5)) sa ea dst2 $two
    same_state sb eb
    fstop_all
    ;;
*)
    fail "unknown case $what"
    ;;
esac
echo "agent_foreign $what: ok"
