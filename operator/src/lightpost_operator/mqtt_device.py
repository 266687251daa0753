# A devnet MQTT device: runs unchanged under MicroPython (with the lpdevice bundle on MICROPYPATH,
# `micropython -X heapsize=64K`) and under CPython (lightpost.device). `lightpost devnet up
# --gateway` copies it to DIR/mqtt/device.py; the demo runs it beside the full nodes.
#
# argv: CONFIG.json [COUNT [INTERVAL_S [WAIT_S [STOP_FILE]]]]
#   COUNT readings (0: until STOP_FILE exists), one per INTERVAL_S, then up to WAIT_S for the
#   gateway's receipts. One JSON line per event on stdout: boot, sent (seq, payload, t_ms),
#   released (records released by a receipt), done.
# No f-strings with format specs, no int.bit_length: MicroPython's subset (annotations are
# parsed and ignored there).
import json
import os
import sys
import time

try:
    from lpdevice import Device
except ImportError:
    from lightpost.device import Device


def now_ms() -> int:
    return time.time_ns() // 1000000


def say(kind: str, **fields: object) -> None:
    fields["kind"] = kind
    fields["t_ms"] = now_ms()
    print(json.dumps(fields))


def stopped(path: str) -> bool:
    if not path:
        return False
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def main(argv: list[str]) -> None:
    with open(argv[1]) as f:
        cfg = json.load(f)
    count = int(argv[2]) if len(argv) > 2 else 0
    interval_ms = int(float(argv[3]) * 1000) if len(argv) > 3 else cfg["cadence_s"] * 1000
    wait_ms = int(float(argv[4]) * 1000) if len(argv) > 4 else 30000
    stop_file = argv[5] if len(argv) > 5 else ""
    dev = Device(
        bytes.fromhex(cfg["secret"]),
        cfg["chain_id"],
        bytes.fromhex(cfg["anchor"]),
        cfg["state_dir"],
        cfg["cadence_s"],
    )
    say("boot", name=cfg["name"], address=dev.address.hex(), seq=dev.seq)
    dev.connect(cfg["host"], cfg["port"], 30)
    sent = 0
    retained = len(dev.store.retained())
    while (count == 0 or sent < count) and not stopped(stop_file):
        reading = {"id": cfg["name"], "n": sent, "temp_c": 20 + (sent * 7 + dev.seq) % 50 / 10}
        payload = json.dumps(reading).encode()
        t = now_ms()
        seq = dev.publish(b"temp", payload, 2, t)
        say("sent", seq=seq, payload=payload.decode(), sent_ms=t)
        sent += 1
        start = now_ms()
        while True:
            dev.poll(100)
            left = len(dev.store.retained())
            if left < retained:
                say("released", retained=left)
            retained = left
            if now_ms() - start >= interval_ms or stopped(stop_file):
                break
    start = now_ms()
    while dev.store.retained() and now_ms() - start < wait_ms:
        dev.poll(100)
    say("done", sent=sent, retained=len(dev.store.retained()), seq=dev.seq)
    dev.close()


if __name__ == "__main__":
    main(sys.argv)
