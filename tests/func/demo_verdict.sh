#!/bin/sh
# `vmig demo` end to end, and its verdict read the way a person reads it:
# PASS, and every line that shows a whole and its parts ("T MiB = A MiB
# ... + B MiB ...") adds up as printed.
# usage: demo_verdict.sh <vmig binary> [demo options...]
set -u
vmig=$1
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$vmig" demo "$@" >"$out" 2>&1
rc=$?
cat "$out"
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$rc" -eq 0 ] || fail "vmig demo exited $rc"
grep -q "verdict  *PASS" "$out" || fail "no PASS verdict"
sums=$(grep -E '[0-9.]+ MiB = [0-9.]+ MiB .*\+ [0-9.]+ MiB' "$out")
[ "$(echo "$sums" | grep -c .)" -ge 2 ] || fail "the verdict shows no totals with their parts"
# tenths of a MiB: T = A + B exactly as printed
bad=$(echo "$sums" | awk '{
    t = ""; a = ""; b = ""
    for (i = 1; i <= NF; i++) {
        if ($i == "=" && t == "") { t = $(i - 2); a = $(i + 1) }
        if ($i == "+" && b == "") { b = $(i + 1) }
    }
    gsub(/\./, "", t); gsub(/\./, "", a); gsub(/\./, "", b)
    if (t + 0 != a + b) print
}')
[ -z "$bad" ] || fail "does not add up: $bad"
# no line shows two byte counts side by side without saying what each is
grep -q "MiB RAM + " "$out" && fail "an unlabelled RAM + device sum is back"
echo "ok: the verdict's numbers add up"
