#!/bin/sh
# The vmig CLI end to end between agent processes over loopback TCP:
# usage errors, check (compatible and not), a refused migration leaving
# the source running, a completed migration with JSON events (the source
# then exits by itself, the guest continues and verifies on the
# destination), and a cancelled migration.
# usage: agent_migrate.sh <vmig binary>
set -u
vmig=$1
. "$(dirname "$0")/agent_lib.sh"

# usage errors exit 2, help exits 0
expect_rc 2 "$vmig"
expect_rc 2 "$vmig" frobnicate
expect_rc 2 "$vmig" migrate --qmp "$dir/none"
expect_rc 2 "$vmig" run --ram 12345
expect_rc 2 "$vmig" status --bogus
expect_rc 0 "$vmig" --help
for c in run receive migrate check status cancel demo; do
    expect_rc 0 "$vmig" "$c" --help
    grep -q "Exit codes: 0 success, 1 failure, 2 usage error" "$dir/last.out" || fail "$c --help lacks exit codes"
done
expect_rc 1 "$vmig" status --qmp "$dir/none"

vm="--ram 16M --dev-state 1M"

start dst $((port_base + 1))
start old $((port_base + 2)) --dev-revision 0
start src -

# compatibility check
expect_rc 0 "$vmig" check --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 1))"
grep -q "verdict: every device can migrate" "$dir/last.out" || fail "check output"
expect_rc 1 "$vmig" check --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 2))"
grep -q "dev0 *INCOMPATIBLE: source revision 1 is newer than 0 here" "$dir/last.out" || fail "check refusal output"

# refused migration: the source keeps running
expect_rc 1 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 2))" --json
grep -q "destination refused" "$dir/last.out" || { cat "$dir/last.out"; fail "refusal output"; }
qmp "$dir/src.qmp" '{"execute":"query-status"}' | grep -q '"status": "running"' || fail "source not running after refusal"

# completed migration with JSON events
expect_rc 0 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 1))" --json
grep -q '"event": *"MIGRATION", *"data": *{ *"status": *"completed"' "$dir/last.out" ||
    grep -q '"event":"MIGRATION","data":{"status":"completed"}' "$dir/last.out" || fail "no completed event"
grep -q '"downtime"' "$dir/last.out" || fail "no downtime"
gone() { ! kill -0 "$1" 2>/dev/null; }
wait_for "the source to exit after migrating" gone "$pid_src"
wait "$pid_src"; rc=$?
[ "$rc" -eq 0 ] || fail "source exited $rc"
wait_for "the destination to finish receiving" settled dst
qmp "$dir/dst.qmp" '{"execute":"query-status"}' | grep -q '"status": "running"' || fail "destination not running"
qmp "$dir/dst.qmp" '{"execute":"x-vmig-query-guest"}' | grep -q '"verified": true' || fail "guest does not verify on destination"
qmp "$dir/dst.qmp" '{"execute":"x-vmig-query-devices"}' | grep -q '"state": "RUNNING"' || fail "devices not running"

# and back (A -> B -> A): a new agent on the first host receives it
start back $((port_base + 4))
steps_b=$(qmp "$dir/dst.qmp" '{"execute":"x-vmig-query-guest"}' | sed -n 's/.*"steps": \([0-9]*\).*/\1/p')
expect_rc 0 "$vmig" migrate --qmp "$dir/dst.qmp" --to "127.0.0.1:$((port_base + 4))" --json
wait_for "the destination to finish receiving" settled back
out=$(qmp "$dir/back.qmp" '{"execute":"x-vmig-query-guest"}')
echo "$out" | grep -q '"verified": true' || fail "guest does not verify after A->B->A: $out"
steps_a=$(echo "$out" | sed -n 's/.*"steps": \([0-9]*\).*/\1/p')
[ "$steps_a" -gt "$steps_b" ] || fail "guest did not progress across two migrations ($steps_b -> $steps_a)"

# cancelled migration: slow it down, cancel, the source keeps running
start src2 -
start dst2 $((port_base + 3))
"$vmig" migrate --qmp "$dir/src2.qmp" --to "127.0.0.1:$((port_base + 3))" --max-bandwidth 4M --json >"$dir/cancel.out" 2>&1 &
mpid=$!
wait_for "the migration to move data" migrating src2
# a second migrate while this one runs is refused and changes nothing
# (its options travel in the same QMP command, applied only on success)
expect_rc 1 "$vmig" migrate --qmp "$dir/src2.qmp" --to "127.0.0.1:$((port_base + 3))" --max-bandwidth 1234 --downtime-limit 77 --no-precopy
grep -q "There's a migration process in progress" "$dir/last.out" || fail "second migrate: $(cat "$dir/last.out")"
qmp "$dir/src2.qmp" '{"execute":"query-migrate-parameters"}' |
    grep -q '"downtime-limit": 300, "max-bandwidth": 4194304, "x-vmig-precopy": true' ||
    fail "a refused migrate changed the parameters"
expect_rc 0 "$vmig" cancel --qmp "$dir/src2.qmp"
wait "$mpid"; rc=$?
[ "$rc" -eq 1 ] || { cat "$dir/cancel.out"; fail "cancelled migrate exited $rc"; }
grep -q '"status": *"cancelled"' "$dir/cancel.out" || grep -q '"status":"cancelled"' "$dir/cancel.out" || fail "no cancelled status"
wait_for "the source to finish the cancelled migration" settled src2
qmp "$dir/src2.qmp" '{"execute":"x-vmig-query-guest"}' | grep -q '"verified": true' || fail "source guest broken after cancel"
qmp "$dir/src2.qmp" '{"execute":"query-status"}' | grep -q '"status": "running"' || fail "source not running after cancel"
# ...and the destination still takes a migration afterwards
expect_rc 0 "$vmig" migrate --qmp "$dir/src2.qmp" --to "127.0.0.1:$((port_base + 3))" --max-bandwidth 0
wait_for "the destination to finish receiving" settled dst2
qmp "$dir/dst2.qmp" '{"execute":"x-vmig-query-guest"}' | grep -q '"verified": true' || fail "guest broken after retry"

# destination agent killed mid-stream: the source keeps running, intact
# (src2 migrated away above and exited; src3 is a new VM)
start src3 -
start dst3 $((port_base + 5))
"$vmig" migrate --qmp "$dir/src3.qmp" --to "127.0.0.1:$((port_base + 5))" --max-bandwidth 4M --json >"$dir/kill.out" 2>&1 &
mpid=$!
wait_for "the migration to move data" migrating src3
kill -9 "$pid_dst3"
wait "$mpid"; rc=$?
[ "$rc" -eq 1 ] || { cat "$dir/kill.out"; fail "migrate to a killed destination exited $rc"; }
grep -q '"status": *"failed"' "$dir/kill.out" || grep -q '"status":"failed"' "$dir/kill.out" || fail "no failed status"
wait_for "the source to finish the failed migration" settled src3
qmp "$dir/src3.qmp" '{"execute":"query-status"}' | grep -q '"status": "running"' || fail "source not running after the destination died"
qmp "$dir/src3.qmp" '{"execute":"x-vmig-query-guest"}' | grep -q '"verified": true' || fail "source guest broken after the destination died"
qmp "$dir/src3.qmp" '{"execute":"x-vmig-query-devices"}' | grep -q '"state": "RUNNING"' || fail "source devices not running"
echo ok
