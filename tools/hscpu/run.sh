#!/bin/bash
# Starts a relay (BINARY) on 127.0.0.1:18471, runs one burst of hscpu
# against it, stops it. Per-IP accounting covers loopback, as for real
# clients. STRACE=1 adds `strace -c -f` over the burst (to STRACE_OUT).
#   go build -o /tmp/hs2/hscpu ./tools/hscpu && go build -o /tmp/hs2/rc ./cmd/roomcast
#   tools/hscpu/run.sh /tmp/hs2/rc -n 3000 -c 4
bin=$1; shift
$bin -listen 127.0.0.1:18471 -admin 127.0.0.1:19471 -jwt-secret s -ip-exempt '' -ip-conn-rate 1000000 -ip-conn-burst 1000000 -ip-max-conns 100000 -ip-room-rate 1000000 -ip-room-burst 1000000 >${RELAY_LOG:-/dev/null} 2>&1 &
pid=$!
sleep 0.7
ss -ltnp | grep -q "127.0.0.1:18471 .*pid=$pid," || { echo "relay $pid not listening"; kill $pid; exit 1; }
if [ -n "$STRACE" ]; then strace -c -f -p $pid -o ${STRACE_OUT:-/tmp/hs2/strace.txt} & spid=$!; sleep 1; fi
${DRV:-/tmp/hs2/hscpu} -pid $pid "$@"
if [ -n "$STRACE" ]; then kill -INT $spid; wait $spid; fi
kill $pid; wait $pid 2>/dev/null
