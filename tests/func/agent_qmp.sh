#!/bin/sh
# A scripted QMP session over socat against `vmig run`: greeting, commands
# refused before qmp_capabilities (CommandNotFound, as QEMU), malformed
# JSON and unknown commands answered with errors while the connection
# keeps serving, ids echoed, argument checking, events with timestamps.
# usage: agent_qmp.sh <vmig binary>
set -eu
vmig=$1
dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; echo "--- transcript" >&2; cat "$dir/out" >&2; exit 1; }

"$vmig" run --qmp "$dir/qmp" --ram 4M --dev-state 64K 2>"$dir/log" &
pid=$!
i=0
while [ ! -S "$dir/qmp" ]; do
    i=$((i + 1)); [ $i -lt 100 ] || fail "agent did not start"; sleep 0.05
done

# Each line is one request; some are deliberately broken.
cat >"$dir/in" <<'QMP'
{"execute": "query-status", "id": "early"}
{"execute": "qmp_capabilities"}
{"execute": "qmp_capabilities", "id": 2}
{"execute": "query-status", "id": 3}
{"execute": "no-such-command", "id": 4}
{"execute": "query-status", "id"
this is not json
{"execute": "query-status", "id": 5}
[1, 2, 3]
{"arguments": {}, "id": 6}
{"execute": 7, "id": 7}
{"execute": "query-status", "arguments": [], "id": 8}
{"execute": "query-status", "bogus": 1, "id": 9}
{"execute": "migrate", "id": 10}
{"execute": "migrate", "arguments": {"uri": "exec:cat"}, "id": 11}
{"execute": "migrate", "arguments": {"uri": "tcp:127.0.0.1:9", "x": 1}, "id": 12}
{"execute": "migrate-set-parameters", "arguments": {"downtime-limit": "soon"}, "id": 13}
{"execute": "migrate-set-parameters", "arguments": {"downtime-limit": 500, "max-bandwidth": 1000000, "multifd-channels": 3, "multifd-compression": "zstd", "multifd-zstd-level": 3}, "id": 14}
{"execute": "migrate-set-parameters", "arguments": {"downtime-limit": 9, "multifd-compression": "lz4"}, "id": 36}
{"execute": "migrate-set-parameters", "arguments": {"multifd-zstd-level": 20}, "id": 37}
{"execute": "query-migrate-parameters", "id": 15}
{"execute": "query-migrate", "id": {"nested": [1]}}
{"execute": "x-vmig-query-devices", "id": 17}
{"execute": "x-vmig-query-guest", "id": 18}
{"execute": "migrate_cancel", "id": 19}
{"execute": "migrate-cancel", "id": 20}
{"execute": "migrate-incoming", "arguments": {"uri": "tcp:127.0.0.1:0"}, "id": 21}
{"execute": "query-version", "id": 22}
{"execute": "migrate", "arguments": {"uri": "tcp:127.0.0.1:1"}, "id": 23}
{"execute": "query-migrate-capabilities", "id": 25}
{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "events", "state": true}]}, "id": 26}
{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "postcopy-ram", "state": true}]}, "id": 27}
{"execute": "query-status", "arguments": {"bogus": 1}, "id": 28}
{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "events"}]}, "id": 29}
{"execute": "migrate-set-parameters", "arguments": {"downtime-limit": 1, "x-vmig-precopy": 0}, "id": 30}
{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1, "downtime-limit": 2000001}, "id": 31}
{"execute": "x-vmig-device-reset", "arguments": {"device": "nope"}, "id": 32}
{"execute": "migrate", "arguments": {"uri": "tcp:127.0.0.1:1", "x-vmig-parameters": {"downtime-limit": 7, "max-bandwidth": -1}}, "id": 33}
{"execute": "migrate", "arguments": {"uri": "tcp:127.0.0.1:1", "resume": true}, "id": 34}
{"execute": "query-migrate-parameters", "arguments": {"bogus": 1}, "id": 35}
QMP
# keep the connection open until the failed migration's event arrived,
# then until the answer to query-migrate did (conditions, not times:
# the machine may be loaded)
seen() { # PATTERN: in the transcript within 120 s
    i=0
    until grep -qF -- "$1" "$dir/out" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 2400 ] || return 1; sleep 0.05
    done
}
(cat "$dir/in"; seen '{"event": "MIGRATION", "data": {"status": "failed"}'
 echo '{"execute": "query-migrate", "id": 24}'; seen '"id": 24}') |
    socat -t 30 - UNIX-CONNECT:"$dir/qmp" >"$dir/out"

has() { grep -F -- "$1" "$dir/out" >/dev/null || fail "missing: $1"; }
has '{"QMP": {"version": {"qemu": {"major": 0, "minor": 1, "micro": 0}, "package": "vmig 0.1.0"}, "capabilities": ["oob"]}}'
has '{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with '"'"'qmp_capabilities'"'"'"}, "id": "early"}'
has '{"return": {}}'
has '"desc": "Capabilities negotiation is already complete, command ignored"}, "id": 2}'
has '{"return": {"status": "running", "singlestep": false, "running": true}, "id": 3}'
has '{"error": {"class": "CommandNotFound", "desc": "The command no-such-command has not been found"}, "id": 4}'
has '"desc": "JSON parse error, '
has '{"return": {"status": "running", "singlestep": false, "running": true}, "id": 5}'
has '"desc": "QMP input must be a JSON object"'
has '"desc": "QMP input lacks member '"'"'execute'"'"'"}, "id": 6}'
has '"desc": "QMP input member '"'"'execute'"'"' must be a string"}, "id": 7}'
has '"desc": "QMP input member '"'"'arguments'"'"' must be an object"}, "id": 8}'
has '"desc": "QMP input member '"'"'bogus'"'"' is unexpected"}, "id": 9}'
has '"desc": "Parameter '"'"'uri'"'"' is missing"}, "id": 10}'
has '"desc": "unknown migration protocol: exec:cat"}, "id": 11}'
has '"desc": "Parameter '"'"'x'"'"' is unexpected"}, "id": 12}'
has '"desc": "Invalid parameter type for '"'"'downtime-limit'"'"', expected: integer"}, "id": 13}'
has '{"return": {}, "id": 14}'
has '{"return": {"downtime-limit": 500, "max-bandwidth": 1000000, "x-vmig-precopy": true, "x-vmig-precopy-max-iterations": 0, "x-vmig-precopy-max-time": 0, "x-vmig-precopy-cap-action": "stop-copy", "x-vmig-reset-policy": "restart", "x-vmig-max-restarts": 0, "x-vmig-allow-mixed-p2p": false, "x-vmig-peer-timeout": 30000, "x-vmig-recover-timeout": 60000, "tls-creds": "", "tls-hostname": "", "tls-authz": "", "x-vmig-tls-identity": "", "x-vmig-ktls": false, "x-vmig-insecure": false, "multifd-channels": 3, "multifd-compression": "zstd", "multifd-zstd-level": 3, "x-vmig-ram-precopy": true}, "id": 15}'
has '{"return": {}, "id": {"nested": [1]}}'
has '"name": "dev0", "type": "memdev"'
has '"verified": true'
has '{"return": {}, "id": 19}'
has '{"return": {}, "id": 20}'
has '"id": 21}'
has '"package": "vmig 0.1.0"}, "id": 22}'
has '{"return": {}, "id": 23}'
has '{"event": "MIGRATION", "data": {"status": "failed"}, "timestamp": {"seconds": '
has '{"return": {"status": "failed", "error-desc": "cannot connect to tcp:127.0.0.1:1: Connection refused"}, "id": 24}'
has '"id": 24}'
has '{"return": [{"capability": "events", "state": true}, {"capability": "x-vmig-test-one-phase-stop", "state": false}], "id": 25}'
has '{"return": {}, "id": 26}'
has '"desc": "Parameter '"'"'capabilities[0].capability'"'"' does not accept value '"'"'postcopy-ram'"'"' (events or x-vmig-test-one-phase-stop)"}, "id": 27}'
has '"desc": "Parameter '"'"'bogus'"'"' is unexpected"}, "id": 28}'
has '"desc": "Parameter '"'"'capabilities[0].state'"'"' is missing"}, "id": 29}'
has '"desc": "Invalid parameter type for '"'"'x-vmig-precopy'"'"', expected: boolean"}, "id": 30}'
has '"desc": "Parameter '"'"'downtime_limit'"'"' expects an integer in the range of 0 to 2000000 milliseconds"}, "id": 31}'
has '{"error": {"class": "DeviceNotFound", "desc": "no vfio-user device named '"'"'nope'"'"' (see x-vmig-query-devices)"}, "id": 32}'
has '"desc": "Parameter '"'"'x-vmig-parameters.max-bandwidth'"'"' expects an integer in the range of 0 to 9223372036854775807 bytes/second"}, "id": 33}'
has '"desc": "Cannot resume if there is no paused migration"}, "id": 34}'
has '"desc": "Parameter '"'"'bogus'"'"' is unexpected"}, "id": 35}'
has '"desc": "Parameter '"'"'multifd-compression'"'"' does not accept value '"'"'lz4'"'"' (none or zstd)"}, "id": 36}'
has '"desc": "Parameter '"'"'multifd-zstd-level'"'"' expects an integer in the range of 0 to 19 (0: the default, 1)"}, "id": 37}'
# every line is a complete JSON value ending in CRLF
n_lines=$(wc -l <"$dir/out")
n_crlf=$(grep -c "$(printf '\r')\$" "$dir/out")
[ "$n_lines" -eq "$n_crlf" ] || fail "lines without CRLF"
[ "$n_lines" -ge 29 ] || fail "expected at least 29 lines, got $n_lines"
# the agent survived all of it
kill -0 "$pid" || fail "agent died"
echo "ok: $n_lines QMP lines checked"
