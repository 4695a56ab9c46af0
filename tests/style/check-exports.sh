#!/bin/sh
# Every function a public header marks VMIG_EXPORT must be exported by
# libvmig.so, and the library must export nothing else (hidden visibility).
set -eu
lib=$1
inc=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Declarations look like "VMIG_EXPORT [VMIG_MUST_CHECK] type name(" and may
# wrap before the name; join each declaration onto one line first.
cat "$inc"/vmig/*.h |
    awk '/VMIG_EXPORT/ {decl=$0; while (decl !~ /\(/ && (getline line) > 0) decl = decl " " line; print decl}' |
    grep -v '#define' |
    sed -E 's/\(.*//; s/.*[ *]//' | sort -u >"$tmp/declared"
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' |
    grep -v -E '^(_init|_fini|_edata|_end|__bss_start)$' | sort -u >"$tmp/exported"
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
if [ -n "$missing" ]; then
    echo "declared VMIG_EXPORT but not exported:" >&2
    echo "$missing" >&2
fi
if [ -n "$extra" ]; then
    echo "exported but not declared in a public header:" >&2
    echo "$extra" >&2
fi
[ -z "$missing" ] && [ -z "$extra" ] || exit 1
echo "$(wc -l <"$tmp/declared") public functions, all exported, nothing else"
