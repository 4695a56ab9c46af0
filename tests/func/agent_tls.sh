#!/bin/sh
# TLS on the migration channel between agent processes (docs/security.md).
# Credentials come from `vmig tls-setup` (a good CA, another CA, expired,
# not yet valid, another client name, other PSK keys).  Every refusal is
# checked the same way: `vmig migrate` exits 1 and names the cause, the
# destination's log names it too, the destination is untouched (still
# "inmigrate", no migration recorded) and still accepting (a good
# migration into it completes afterwards), and the source VM keeps
# running with its guest (and accelerator workload) verified.
#
#   x509   refusals by an x509 destination with an allow-list: a plaintext
#          source, a client certificate from another CA, an expired one, a
#          not yet valid one, a host name mismatch, a subject not in the
#          allow-list; then an x509 migration with the accelerator
#          workload, verified on the destination; `vmig check` over TLS
#   psk    refusals by a PSK destination: a wrong key, an unknown
#          identity; then a PSK migration with the accelerator workload
#   plain  a TLS source refused by a plaintext destination (which then
#          takes a plaintext migration); secure by default: no plaintext
#          listener beyond loopback without --insecure; bad credentials
#          fail at start; QMP tls-* parameters
# usage: agent_tls.sh <vmig binary> x509|psk|plain
set -u
vmig=$1
what=$2
. "$(dirname "$0")/agent_lib.sh"
# ports 10000..19006, apart from the other agent tests' 20000..40005; a
# multiple of 10 per process, so two of these tests never share one
port_base=$((10000 + ($$ % 900) * 10))
vm="--ram 16M --dev-state 1M"
QMP_TIMEOUT=5

creds() { # dir [tls-setup options]: credentials made by vmig tls-setup
    d=$1; shift
    "$vmig" tls-setup "$dir/$d" "$@" >/dev/null || fail "tls-setup $d $*"
}
# The source VM keeps running, its guest (and accelerator) verified.
src_intact() { # name what
    # a refused migration may still be rolling back (the vCPU busy): wait
    # for it to end before judging the guest
    wait_for "$1 to end the refused migration ($2)" settled "$1"
    qmp "$dir/$1.qmp" '{"execute":"query-status"}' | grep -q '"status": "running"' || fail "source not running after $2"
    qmp "$dir/$1.qmp" '{"execute":"x-vmig-query-guest"}' | grep -q '"verified": true' || fail "source guest broken after $2"
    if [ -n "${acc:-}" ]; then
        a=$(accel "$1")
        echo "$a" | grep -q '"bad": 0, "duplicates": 0' || fail "source accelerator workload wrong after $2: $a"
        echo "$a" | grep -q '"verified": true' || fail "source accelerator workload does not verify after $2: $a"
    fi
}
# The destination never started a migration and still waits for one.  A
# plaintext destination (no TLS of its own) does see the attempt: it
# records it as failed, naming TLS ($failed_says), and took nothing.
dst_untouched() { # name what
    qmp "$dir/$1.qmp" '{"execute":"query-status"}' | grep -q '"status": "inmigrate"' || fail "destination $1 left inmigrate after $2"
    m=$(qmp "$dir/$1.qmp" '{"execute":"query-migrate"}')
    if [ -n "${failed_says:-}" ]; then
        echo "$m" | grep -q '"status": "failed"' && echo "$m" | grep -qF "$failed_says" || fail "destination $1 after $2: $m"
        ! echo "$m" | grep -q '"transferred": [1-9]' || fail "destination $1 took state after $2: $m"
    else
        echo "$m" | grep -q '"return": {}' || fail "destination $1 recorded a migration after $2: $m"
    fi
}
wait_log() { # file text
    i=0
    while ! grep -qF -- "$2" "$1"; do
        i=$((i + 1)); [ $i -lt 200 ] || fail "$1 does not say '$2'"
        sleep 0.05
    done
}
# refused <what> <dst> <port> <source text> <destination text> [migrate options]
refused() {
    r_what=$1; r_dst=$2; r_port=$3; r_src=$4; r_dlog=$5; shift 5
    expect_rc 1 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$r_port" "$@"
    grep -qF -- "$r_src" "$dir/last.out" || { cat "$dir/last.out" >&2; fail "$r_what: the source does not say '$r_src'"; }
    wait_log "$dir/$r_dst.log" "$r_dlog"
    src_intact src "$r_what"
    dst_untouched "$r_dst" "$r_what"
}
# a completed migration with the accelerator workload, verified there
completes() { # dst port what [migrate options]
    c_dst=$1; c_port=$2; c_what=$3; shift 3
    expect_rc 0 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$c_port" --json "$@"
    grep -q '"x-vmig-tls": {"enabled": true' "$dir/last.out" ||
        grep -q '"x-vmig-tls":{"enabled":true' "$dir/last.out" || fail "$c_what: query-migrate does not show TLS: $(cat "$dir/last.out")"
    wait_finished "$c_dst"
    a=$(accel "$c_dst")
    echo "$a" | grep -q '"completed": 20000' || fail "$c_what: not every request completed: $a"
    echo "$a" | grep -q '"bad": 0, "duplicates": 0' || fail "$c_what: wrong or duplicate completions: $a"
    echo "$a" | grep -q '"verified": true' || fail "$c_what: workload does not verify: $a"
    qmp "$dir/$c_dst.qmp" '{"execute":"x-vmig-query-guest"}' | grep -q '"verified": true' || fail "$c_what: guest does not verify on the destination"
    qmp "$dir/$c_dst.qmp" '{"execute":"query-status"}' | grep -q '"status": "running"' || fail "$c_what: destination not running"
}

creds good
creds other
mkdir "$dir/rogue" && cp "$dir/good/ca-cert.pem" "$dir/other/client-cert.pem" "$dir/other/client-key.pem" "$dir/rogue/" ||
    fail "rogue credentials"
creds expired --ca "$dir/good" --valid-from -10 --valid-days 2
creds future --ca "$dir/good" --valid-from 10 --valid-days 10
creds intruder --ca "$dir/good" --client-cn intruder
creds stranger --tls-identity stranger
echo "CN=vmig-client,O=vmig" >"$dir/allowed"

case "$what" in
x509)
    acc="--device acc"
    start dst $((port_base + 1)) $acc --tls-creds "$dir/good" --tls-authz "$dir/allowed"
    start src - $acc --acc-requests 20000
    grep -q "listening on 127.0.0.1:$((port_base + 1)) (TLS required)" "$dir/dst.log" || fail "the destination does not say it requires TLS"
    refused "a plaintext source" dst $((port_base + 1)) \
        "the destination requires TLS and this agent has no TLS credentials" \
        "the source speaks plaintext"
    expect_rc 1 "$vmig" check --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 1))"
    grep -q "requires TLS" "$dir/last.out" || fail "check: plaintext refusal not named: $(cat "$dir/last.out")"
    refused "a certificate from another CA" dst $((port_base + 1)) \
        "the destination does not trust our certificate" \
        "the source's certificate 'CN=vmig-client,O=vmig' is not signed by our CA" \
        --tls-creds "$dir/rogue"
    refused "an expired certificate" dst $((port_base + 1)) \
        "says our certificate has expired" \
        "the source's certificate 'CN=vmig-client,O=vmig' has expired" \
        --tls-creds "$dir/expired"
    refused "a not yet valid certificate" dst $((port_base + 1)) \
        "the destination rejected our certificate" \
        "the source's certificate 'CN=vmig-client,O=vmig' is not yet valid" \
        --tls-creds "$dir/future"
    refused "a host name mismatch" dst $((port_base + 1)) \
        "the destination's certificate 'CN=localhost,O=vmig' is not valid for host 'db.example.org'" \
        "the source rejected our certificate" \
        --tls-creds "$dir/good" --tls-hostname db.example.org
    refused "a subject not in the allow-list" dst $((port_base + 1)) \
        "the destination refused us: 'CN=intruder,O=vmig' is not in the destination's allow-list" \
        "'CN=intruder,O=vmig' is not in the allow-list" \
        --tls-creds "$dir/intruder" --tls-hostname localhost
    # the parameters are QEMU's, visible in query-migrate-parameters
    qmp "$dir/src.qmp" '{"execute":"query-migrate-parameters"}' | grep -q "\"tls-creds\": \"$dir/intruder\"" || fail "tls-creds not in query-migrate-parameters"
    qmp "$dir/dst.qmp" '{"execute":"query-migrate-parameters"}' | grep -q "\"tls-authz\": \"$dir/allowed\"" || fail "tls-authz not in query-migrate-parameters"
    # the same destination still takes a compatibility check and then
    # the VM (127.0.0.1 is in the certificate too)
    expect_rc 0 "$vmig" check --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 1))" --tls-creds "$dir/good" --tls-hostname 127.0.0.1
    dst_untouched dst "a compatibility check"
    completes dst $((port_base + 1)) "x509" --tls-creds "$dir/good" --tls-hostname localhost
    grep -q '"auth": "x509", "peer": "CN=localhost,O=vmig"' "$dir/last.out" ||
        grep -q '"auth":"x509","peer":"CN=localhost,O=vmig"' "$dir/last.out" || fail "x509: the source does not name the destination it authenticated"
    wait_log "$dir/dst.log" "peer 'CN=vmig-client,O=vmig' authenticated by certificate"
    ;;
psk)
    acc="--device acc"
    start dst $((port_base + 2)) $acc --tls-psk "$dir/good/keys.psk"
    start src - $acc --acc-requests 20000
    refused "a wrong pre-shared key" dst $((port_base + 2)) \
        "wrong pre-shared key" "wrong pre-shared key: the source knows identity 'qemu'" \
        --tls-psk "$dir/other/keys.psk"
    refused "an unknown PSK identity" dst $((port_base + 2)) \
        "the destination refused the handshake: it does not know PSK identity 'stranger'" \
        "the source used PSK identity 'stranger', which is not in" \
        --tls-psk "$dir/stranger/keys.psk" --tls-identity stranger
    refused "a plaintext source" dst $((port_base + 2)) \
        "the destination requires TLS" "the source speaks plaintext" \
        --tls-creds ""
    completes dst $((port_base + 2)) "PSK" --tls-psk "$dir/good/keys.psk" --tls-identity qemu
    grep -q '"auth": "psk", "peer": "qemu"' "$dir/last.out" ||
        grep -q '"auth":"psk","peer":"qemu"' "$dir/last.out" || fail "PSK: the source does not name the identity"
    ;;
plain)
    start dst $((port_base + 3))
    start src - --tls-creds "$dir/good"
    failed_says="the source speaks TLS and this destination has no TLS credentials"
    refused "TLS to a plaintext destination" dst $((port_base + 3)) \
        "the destination speaks plaintext" \
        "the peer speaks TLS but this side has no TLS credentials"
    failed_says=""
    # QMP: the parameters as QEMU names them; "" turns TLS off
    qmp "$dir/src.qmp" '{"execute":"query-migrate-parameters"}' | grep -q "\"tls-creds\": \"$dir/good\", \"tls-hostname\": \"\", \"tls-authz\": \"\"" || fail "tls-* in query-migrate-parameters: $(qmp "$dir/src.qmp" '{"execute":"query-migrate-parameters"}')"
    qmp "$dir/src.qmp" '{"execute":"migrate-set-parameters","arguments":{"tls-creds":"/nonexistent"}}' | grep -q "TLS credentials /nonexistent" || fail "a missing tls-creds accepted"
    qmp "$dir/src.qmp" '{"execute":"migrate-set-parameters","arguments":{"tls-authz":"/nonexistent"}}' | grep -q "not a file" || fail "a missing tls-authz accepted"
    qmp "$dir/src.qmp" '{"execute":"migrate-set-parameters","arguments":{"tls-creds":""}}' | grep -q '"return": {}' || fail "tls-creds \"\" refused"
    expect_rc 0 "$vmig" migrate --qmp "$dir/src.qmp" --to "127.0.0.1:$((port_base + 3))" --json
    grep -q '"x-vmig-tls": {"enabled": false' "$dir/last.out" ||
        grep -q '"x-vmig-tls":{"enabled":false' "$dir/last.out" || fail "plaintext migration shown as TLS"
    qmp "$dir/dst.qmp" '{"execute":"x-vmig-query-guest"}' | grep -q '"verified": true' || fail "guest does not verify after the plaintext migration"
    # secure by default: no plaintext listener beyond loopback
    expect_rc 1 "$vmig" receive --qmp "$dir/open.qmp" --listen "0.0.0.0:$((port_base + 4))" $vm
    grep -q "refusing to accept migrations on 0.0.0.0:$((port_base + 4)) in plaintext" "$dir/last.out" || fail "plaintext on 0.0.0.0 not refused: $(cat "$dir/last.out")"
    grep -q "vmig tls-setup DIR" "$dir/last.out" && grep -q -- "--insecure" "$dir/last.out" || fail "the refusal does not say what to do"
    expect_rc 1 "$vmig" receive --qmp "$dir/open.qmp" --listen "0.0.0.0:$((port_base + 4))" $vm --tls-creds "$dir/nowhere"
    grep -q "nowhere" "$dir/last.out" || fail "missing credentials not named"
    # with credentials or --insecure it starts (and is stopped at once)
    start open $((port_base + 5)) --tls-psk "$dir/good/keys.psk"
    qmp "$dir/open.qmp" '{"execute":"quit"}' >/dev/null
    "$vmig" receive --qmp "$dir/ins.qmp" --listen "0.0.0.0:$((port_base + 6))" $vm --insecure 2>"$dir/ins.log" &
    pids="$pids $!"
    wait_sock "$dir/ins.qmp"
    wait_log "$dir/ins.log" "(plaintext, --insecure)"
    qmp "$dir/ins.qmp" '{"execute":"quit"}' >/dev/null
    # usage: one kind of credentials; --insecure is for receive
    expect_rc 2 "$vmig" run --qmp "$dir/x.qmp" --tls-creds "$dir/good" --tls-psk "$dir/good/keys.psk"
    expect_rc 2 "$vmig" migrate --qmp "$dir/x.qmp" --to 127.0.0.1:1 --insecure
    expect_rc 2 "$vmig" status --qmp "$dir/x.qmp" --tls-creds "$dir/good"
    expect_rc 2 "$vmig" tls-setup
    expect_rc 0 "$vmig" tls-setup --help
    ;;
*)
    fail "unknown case $what"
    ;;
esac
echo ok
