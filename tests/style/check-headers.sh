#!/bin/sh
# Every public header must compile on its own, in C11, with the project's
# warnings: a user includes just the one header they need.
set -eu
cc=$1
inc=$2
fail=0
for h in "$inc"/vmig/*.h; do
    name=vmig/$(basename "$h")
    if ! printf '#include <%s>\n' "$name" |
        "$cc" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wstrict-prototypes \
            -I"$inc" -fsyntax-only -x c - ; then
        echo "FAIL: <$name> does not compile on its own" >&2
        fail=1
    fi
done
[ "$fail" -eq 0 ] && echo "all public headers are self-contained"
exit "$fail"
