# A device as a MicroPython board runs it (tests/device/test_micropython.py starts this file under
# the real MicroPython Unix port with a 64 KiB heap).
# argv: secret-hex anchor-hex port state-dir count delay-ms receipt-wait-ms
import gc
import sys
import time

from lpdevice import Device

secret, anchor, port, state, count, delay_ms, wait_ms = sys.argv[1:8]
dev = Device(bytes.fromhex(secret), 31337, bytes.fromhex(anchor), state, cadence_s=5)
print("boot", dev.seq)
dev.connect("127.0.0.1", int(port), keepalive=30)
for i in range(int(count)):
    t = time.ticks_ms()
    seq = dev.publish(b"temp", f"reading {i}".encode(), content_type=1)
    print("published", seq, time.ticks_diff(time.ticks_ms(), t))
    dev.poll(0)
    time.sleep_ms(int(delay_ms))
start = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), start) < int(wait_ms):
    dev.poll(100)
    if not dev.store.retained():
        break
gc.collect()
print("retained", dev.store.retained())
print("heap", gc.mem_alloc(), gc.mem_free())
dev.close()
