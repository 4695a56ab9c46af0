#!/bin/sh
# `make install` output is usable: install into a temporary prefix, build a
# program against it with pkg-config alone, run it.
set -eu
build=$1
cc=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
pc=$(find "$tmp/prefix" -name vmig.pc | head -n 1)
[ -n "$pc" ] || { echo "vmig.pc not installed" >&2; exit 1; }
cat >"$tmp/app.c" <<'EOC'
#include <stdio.h>
#include <string.h>
#include <vmig/vmig.h>
int main(void)
{
    struct vmig_fsm_path p;
    char buf[128];
    if (vmig_fsm_path(VMIG_MIGRATION_STOP_COPY | VMIG_MIGRATION_P2P,
                      VMIG_STATE_RUNNING, VMIG_STATE_STOP_COPY, &p) != 0)
        return 1;
    puts(vmig_fsm_path_format(&p, buf, sizeof(buf)));
    return strcmp(buf, "RUNNING -> RUNNING_P2P -> STOP -> STOP_COPY") != 0;
}
EOC
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Werror -o "$tmp/app" "$tmp/app.c" \
    $(pkg-config --cflags --libs vmig)
libdir=$(cd "$(pkg-config --variable=libdir vmig)" && pwd)
case "$libdir" in
"$tmp/prefix"/*) ;;
*) echo "vmig.pc points outside the install prefix: $libdir" >&2; exit 1 ;;
esac
LD_LIBRARY_PATH=$libdir "$tmp/app"
echo "installed library, headers and vmig.pc work"
