#!/bin/sh
# `make install` gives what a Debian user expects, usable where it lands:
#   - `make install PREFIX=/usr DESTDIR=stage` (as packaging does) and
#     `cmake --install --prefix DIR` put the programs, libvmig.so with its
#     soname and version links, every public header, a relocatable vmig.pc,
#     manual pages, bash completion and the systemd unit example in place;
#   - a program builds against the installed tree with pkg-config alone
#     and runs;
#   - the manual pages pass man -l (groff warnings), lexgrog and mandoc's
#     lint, and vmig(1) names every subcommand and every option the
#     installed vmig accepts (the device pages likewise);
#   - bash completion completes subcommands, options and values;
#   - the installed vmig runs a VM with an installed device program;
#   - the systemd unit passes systemd-analyze verify (where available).
# usage: install-pkgconfig.sh BUILD-DIR CC SOURCE-DIR
set -eu
build=$1
cc=$2
src=$3
tmp=$(mktemp -d)
agent=
cleanup() {
    [ -z "$agent" ] || kill "$agent" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# staged, as a Debian package build does it
make -s -C "$src" install BUILD="$build" PREFIX=/usr DESTDIR="$tmp/stage" \
    JOBS=1 >/dev/null
root=$tmp/stage/usr
for f in bin/vmig bin/vmig-acc bin/vmig-flowtab lib/libvmig.so \
    lib/pkgconfig/vmig.pc share/man/man1/vmig.1 share/man/man1/vmig-acc.1 \
    share/man/man1/vmig-flowtab.1 share/man/man3/libvmig.3 \
    share/bash-completion/completions/vmig \
    share/doc/vmig/examples/vmig-receive@.service; do
    [ -e "$root/$f" ] || fail "not installed: $f"
done
for h in "$src"/include/vmig/*.h; do
    [ -f "$root/include/vmig/$(basename "$h")" ] || fail "header $h not installed"
done
soname=$(readelf -d "$root/lib/libvmig.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libvmig.so.0 ] || fail "soname is '$soname', expected libvmig.so.0"
if [ ! -L "$root/lib/libvmig.so" ] || [ ! -L "$root/lib/libvmig.so.0" ] ||
    [ ! -f "$root/lib/libvmig.so.0.1.0" ]; then
    fail "libvmig.so version links"
fi
[ "$(readlink "$root/lib/libvmig.so.0")" = libvmig.so.0.1.0 ] || fail "libvmig.so.0 link"

# a program against each installed tree, with pkg-config alone
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
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
for tree in "$root" "$tmp/prefix"; do
    pc=$(find "$tree" -name vmig.pc | head -n 1)
    [ -n "$pc" ] || fail "vmig.pc not installed in $tree"
    # shellcheck disable=SC2046
    PKG_CONFIG_PATH=$(dirname "$pc") sh -c '"$1" -std=c11 -Wall -Werror -o "$2" "$3" $(pkg-config --cflags --libs vmig)' \
        sh "$cc" "$tmp/app" "$tmp/app.c"
    libdir=$(cd "$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --variable=libdir vmig)" && pwd)
    case "$libdir" in
    "$tree"/*) ;;
    *) fail "vmig.pc points outside the install tree: $libdir" ;;
    esac
    LD_LIBRARY_PATH=$libdir "$tmp/app" >/dev/null || fail "the app did not run against $tree"
done

# manual pages: the Debian tools read them without a complaint
command -v mandoc >/dev/null || fail "mandoc missing (scripts/install-deps installs it)"
for m in "$root"/share/man/man1/*.1 "$root"/share/man/man3/*.3; do
    out=$(MANWIDTH=80 man --warnings -l "$m" 2>&1 >/dev/null) || fail "man -l $m"
    [ -z "$out" ] || fail "man -l $m: $out"
    lexgrog "$m" >/dev/null || fail "lexgrog cannot read $m"
    out=$(mandoc -T lint -W warning "$m" 2>&1) || fail "mandoc -T lint $m: $out"
    [ -z "$out" ] || fail "mandoc -T lint $m: $out"
done
export LD_LIBRARY_PATH="$root/lib"
vmig=$root/bin/vmig
page=$root/share/man/man1/vmig.1
cmds=$("$vmig" --help | awk '/^commands:/ {on=1; next} on && /^  [a-z]/ {print $1} on && /^$/ {exit}')
[ -n "$cmds" ] || fail "no commands in vmig --help"
for c in $cmds; do
    grep -qxF ".SS $c" "$page" ||
        grep -qxF ".SS $(echo "$c" | sed 's/-/\\-/g')" "$page" ||
        fail "vmig(1) has no section for '$c'"
    for o in $("$vmig" "$c" --help | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
        grep -qF -- "$(echo "$o" | sed 's/-/\\-/g')" "$page" ||
            fail "vmig(1) does not mention $o (vmig $c --help has it)"
    done
done
for d in vmig-acc vmig-flowtab; do
    for o in $("$root/bin/$d" --help 2>&1 | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
        grep -qF -- "$(echo "$o" | sed 's/-/\\-/g')" "$root/share/man/man1/$d.1" ||
            fail "$d(1) does not mention $o"
    done
done

# bash completion, from the installed vmig's own help
if command -v bash >/dev/null; then
    PATH=$root/bin:$PATH bash -c '
        . "$1"
        t() { want=$1; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
              COMPREPLY=(); _vmig vmig; case " ${COMPREPLY[*]} " in
              *" $want "*) ;; *) echo "completing [$*]: got [${COMPREPLY[*]}], want $want" >&2; exit 1 ;; esac; }
        t migrate vmig mig
        t cancel vmig help can
        t --max-bandwidth vmig migrate --max-b
        t --listen vmig receive --qmp x --lis
        t abort vmig migrate --cap-action ab
        t flowtab vmig run --device flo
        t --tls-creds vmig migrate --to h:1 --tls-cr
    ' sh "$root/share/bash-completion/completions/vmig" || fail "bash completion"
fi

# the installed vmig runs a VM with an installed device program
mkdir "$tmp/run"
chmod 700 "$tmp/run"
TMPDIR=$tmp/run "$vmig" run -v --qmp "$tmp/run/q" --ram 16M --device acc \
    --acc-requests 100 2>"$tmp/run.log" &
agent=$!
i=0
until "$vmig" status --qmp "$tmp/run/q" >"$tmp/status" 2>&1; do
    i=$((i + 1))
    [ $i -lt 300 ] || { cat "$tmp/run.log" >&2; fail "the installed vmig did not start"; }
    kill -0 "$agent" 2>/dev/null || { cat "$tmp/run.log" >&2; fail "the installed vmig exited"; }
    sleep 0.1
done
grep -q '"running"' "$tmp/status" || fail "installed vmig status: $(cat "$tmp/status")"
grep -q "spawned $root/bin/vmig-acc" "$tmp/run.log" || fail "the installed vmig-acc was not the one spawned"
kill "$agent"
wait "$agent" || true
agent=

# the example unit is valid systemd syntax (its ExecStart pointed at the
# installed binary)
if command -v systemd-analyze >/dev/null; then
    mkdir "$tmp/unit"
    sed "s|/usr/bin/vmig|$vmig|" "$root/share/doc/vmig/examples/vmig-receive@.service" \
        >"$tmp/unit/vmig-receive@.service"
    out=$(cd "$tmp/unit" && systemd-analyze verify --man=no ./vmig-receive@test.service 2>&1) ||
        fail "systemd-analyze verify: $out"
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
fi
echo "installed tree complete: programs, libvmig.so.0, headers, vmig.pc, man pages, completion, unit"
