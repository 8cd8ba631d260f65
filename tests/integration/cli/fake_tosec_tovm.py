#!/usr/bin/env python3
"""A stand-in for tosec-tovm in the CLI's tests (until and besides the real TOE).

Accepts tosec-tovm's command line, listens on --status and --sidecar, prints the ready line and
serves a canned status JSON to every status connection. FAKE_TOVM_MODE selects misbehaviour:
"ready" (default), "fail" (exit 3 before ready), "silent" (never ready), "die-after-ready"
(exit 4 one second after ready). FAKE_TOVM_ARGS_FILE, if set, receives the argv (one per line).
"""
import argparse
import json
import os
import signal
import socket
import sys
import time

p = argparse.ArgumentParser()
for name in ("guest", "ivshmem", "sidecar", "status", "log-level"):
    p.add_argument("--" + name, required=name in ("guest", "ivshmem", "sidecar", "status"))
for name in ("lanes", "max-sockets", "ring-slots", "socket-rx-entries", "chunk-size",
             "tx-chunks-per-lane", "rx-chunks", "workers", "spin-ns"):
    p.add_argument("--" + name, type=int)
args = p.parse_args()

if os.environ.get("FAKE_TOVM_ARGS_FILE"):
    with open(os.environ["FAKE_TOVM_ARGS_FILE"], "w") as f:
        f.write("\n".join(sys.argv[1:]) + "\n")

mode = os.environ.get("FAKE_TOVM_MODE", "ready")
print("fake tosec-tovm for guest %s starting" % args.guest, flush=True)
if mode == "fail":
    print("fake tosec-tovm: cannot attach region (simulated)", file=sys.stderr, flush=True)
    sys.exit(3)

start = time.time()
status = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
status.bind(args.status)
status.listen(8)
sidecar = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
sidecar.bind(args.sidecar)
sidecar.listen(8)


def stop(*_):
    for path in (args.status, args.sidecar):
        try:
            os.unlink(path)
        except OSError:
            pass
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)

if mode == "silent":
    while True:
        time.sleep(1)

print("tosec-tovm: ready", flush=True)
if mode == "die-after-ready":
    time.sleep(1)
    sys.exit(4)

while True:
    conn, _ = status.accept()
    doc = {
        "guest": args.guest, "pid": os.getpid(), "uptime_s": int(time.time() - start),
        "lanes": [{"lane": 0, "pid": 4242}],
        "sockets": {"open": 1, "connecting": 0, "connected": 2, "listening": 1, "closing": 0},
        "bytes_from_guest": 1000, "bytes_to_guest": 2048, "bytes_tx_wire": 1000,
        "bytes_rx_wire": 2048, "rx_backpressure_events": 0, "bad_descriptors": 0,
        "guests_reclaimed": 0,
    }
    conn.sendall(json.dumps(doc).encode())
    conn.close()
