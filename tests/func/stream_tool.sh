#!/bin/sh
# vmig-stream against the golden envelope and corrupted copies of it.
# usage: stream_tool.sh <vmig-stream> <tests/data dir>
set -u
vs=$1
data=$2
golden=$data/stream-v1.bin
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

expect 0 'exit status' --help
expect 2 'unknown command' frobnicate x
expect 2 'No such file' verify "$work/missing"
expect 0 'record 5 +type 0x0280 +flags optional ' dump "$golden"
expect 0 'stream OK' dump "$golden"
expect 0 'known bad +1: EQ/AEQ addresses saved wrongly' dump "$golden"
expect 0 '' verify "$golden"

head -c 5000 "$golden" >"$work/trunc.bin"
expect 1 'INVALID \(truncated, .*inside record 4 \(type 0x200\)' \
    verify "$work/trunc.bin"
cp "$golden" "$work/flip.bin"
printf '\377' | dd of="$work/flip.bin" bs=1 seek=400 conv=notrunc 2>/dev/null
expect 1 'INVALID \(payload-checksum, .*record 3 \(type 0x200, 1000 bytes\)' \
    verify "$work/flip.bin"
printf 'QEMU' | dd of="$work/flip.bin" bs=1 seek=0 conv=notrunc 2>/dev/null
expect 1 'not a vmig device-state stream' dump "$work/flip.bin"
cat "$golden" "$golden" >"$work/twice.bin"
expect 1 'after-end' verify "$work/twice.bin"

expect 0 '"vendor-version":"golden-device 1.0"' desc "$golden"
"$vs" desc "$golden" >"$work/dst.json"
expect 0 '^compatible: stream version 2' check "$work/dst.json" "$golden"
expect 0 '^compatible: stream version 2' check "$work/dst.json" \
    "$work/dst.json"
sed 's/"qp-count":"16"/"qp-count":"8"/' "$work/dst.json" >"$work/small.json"
expect 1 'NOT compatible: resource parameter qp-count differs: source "16", destination "8"' \
    check "$work/small.json" "$golden"
echo '{"vendor-id": 1' >"$work/broken.json"
expect 2 'not valid JSON' check "$work/broken.json" "$golden"

[ "$fails" -eq 0 ] && echo "all vmig-stream checks passed"
exit "$fails"
