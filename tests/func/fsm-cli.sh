#!/bin/sh
# vmig-fsm answers path/v1/flags queries with the right text and exit code.
set -u
bin=$1
fail=0
expect() { # expect <exit> <substring> <args...>
    want_rc=$1 want_out=$2
    shift 2
    out=$("$bin" "$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want_rc" ] || ! printf '%s' "$out" | grep -qF -- "$want_out"; then
        echo "FAIL: vmig-fsm $*: rc=$rc (want $want_rc), output: $out" >&2
        fail=1
    fi
}
expect 0 "RUNNING -> RUNNING_P2P -> STOP -> STOP_COPY" path running stop-copy
expect 0 "RUNNING -> STOP -> STOP_COPY" path RUNNING STOP_COPY --flags STOP_COPY
expect 0 "PRE_COPY -> STOP_COPY" path PRE_COPY STOP_COPY --flags 5
expect 1 "refused (EINVAL)" path STOP_COPY PRE_COPY
expect 1 "state not supported" path RUNNING RUNNING_P2P --flags 1
expect 2 "unknown state" path RUNNING NOWHERE
expect 0 "RUNNING_P2P" v1 9
expect 1 "invalid" v1 6
expect 1 "invalid" v1 0x15
expect 0 "valid" flags "STOP_COPY|P2P"
expect 1 "STOP_COPY is mandatory" flags 2
expect 1 "STOP_COPY is mandatory" flags 9
expect 2 "usage" bogus
expect 0 "[open-save]" table --flags 7
expect 0 "STOP_COPY    -> PRE_COPY     : refused (EINVAL)" table
[ "$fail" -eq 0 ] && echo "vmig-fsm CLI: all checks passed"
exit "$fail"
