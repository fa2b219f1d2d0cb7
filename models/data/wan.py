"""A wide-area link for the lab: relays Ethernet frames between two TAP devices, each
direction delayed by a one-way latency with a little jitter, in order.

The lab's kernel has no netem qdisc, so without this every round trip inside the lab takes
well under a millisecond, while a real gateway sees 15-70 ms to a site on the internet
(reddit.pcap: median 35 ms from SYN to SYN-ACK). lab.sh puts one TAP on the LAN bridge and
one on the bridge of the "internet" hosts, and runs this between them.

Usage: python3 wan.py LAN_TAP WAN_TAP ONE_WAY_MS JITTER_MS SEED
"""

import collections
import fcntl
import os
import random
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
# Frames held in one direction at most; a real link drops beyond its buffer too.
MAX_QUEUE = 20000


def open_tap(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    lan, wan = open_tap(sys.argv[1]), open_tap(sys.argv[2])
    delay, jitter = float(sys.argv[3]) / 1000, float(sys.argv[4]) / 1000
    rng = random.Random(int(sys.argv[5]))
    # Per direction: frames waiting (departure time, frame), and the last departure, so that
    # jitter never reorders a flow's packets (a wire keeps order).
    queues = {lan: collections.deque(), wan: collections.deque()}
    last = {lan: 0.0, wan: 0.0}
    peer = {lan: wan, wan: lan}
    while True:
        now = time.monotonic()
        due = [q[0][0] for q in queues.values() if q]
        timeout = max(0.0, min(due) - now) if due else 1.0
        readable, _, _ = select.select([lan, wan], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            while True:
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                queue = queues[fd]
                if len(queue) >= MAX_QUEUE:
                    continue
                departs = max(now + delay + rng.uniform(0, jitter), last[fd])
                last[fd] = departs
                queue.append((departs, frame))
        now = time.monotonic()
        for fd, queue in queues.items():
            while queue and queue[0][0] <= now:
                _, frame = queue.popleft()
                try:
                    os.write(peer[fd], frame)
                except (BlockingIOError, OSError):
                    pass  # the receiving side's queue is full: the frame is lost, as on a wire


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
