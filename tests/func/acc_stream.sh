#!/bin/sh
# The accelerator's golden envelope (tests/data/acc-envelope-v2.bin, written
# by acc_mig for 2 queue pairs, isolation "queue-pair") read by the generic
# vmig-stream tool: it verifies, shows the descriptor, and IS_COMPATIBLE
# says yes for a 2-pair destination and no, with the reason, for 3 pairs.
# usage: acc_stream.sh <vmig-stream> <tests/data dir>
set -u
vs=$1
data=$2
env=$data/acc-envelope-v2.bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0

# expect <exit code> <regex for stdout+stderr> <args...>
expect() {
    want=$1 pattern=$2
    shift 2
    "$vs" "$@" >"$work/out" 2>&1
    rc=$?
    if [ "$rc" -ne "$want" ] ||
        { [ -n "$pattern" ] && ! grep -Eq -- "$pattern" "$work/out"; }; then
        echo "FAIL: vmig-stream $* -> exit $rc (want $want), output:" >&2
        cat "$work/out" >&2
        fails=$((fails + 1))
    else
        echo "ok: vmig-stream $* -> $rc"
    fi
}

expect 0 '' verify "$env"
expect 0 'known bad +1: EQ/AEQ addresses saved wrongly' dump "$env"
expect 0 '"qp-count":"2"' desc "$env"
expect 0 'compatible' check "$data/acc-desc-2qp.json" "$env"
expect 1 'qp-count differs' check "$data/acc-desc-3qp.json" "$env"

# A flipped byte in the state record is caught.
cp "$env" "$work/bad.bin"
printf '\377' | dd of="$work/bad.bin" bs=1 seek=300 conv=notrunc 2>/dev/null
expect 1 'checksum' verify "$work/bad.bin"

[ "$fails" -eq 0 ] && echo "all acc envelope checks passed"
exit "$fails"
