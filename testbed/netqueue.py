"""Delay and loss for a host's outgoing packets without `sch_netem`: a kernel built without `tc netem` (some VM
kernels) still has netfilter's NFQUEUE. An iptables rule in the host's namespace queues its outgoing packets to
this process, which gives each one its verdict after `delay_ms` (in order, as netem's constant delay does) and
drops `loss_pct` percent of them at random (as netem's loss).

Run inside the namespace: `ip netns exec NS python -m testbed.netqueue --queue N --delay-ms 100 --loss-pct 5`.
It speaks nfnetlink_queue over a raw netlink socket (no library): bind the queue, copy only the metadata, and
answer each packet id with NF_ACCEPT or NF_DROP. The rule uses `--queue-bypass`, so packets pass untouched when
this process is not bound.
"""

from __future__ import annotations

import argparse
import collections
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_DROP, NF_ACCEPT = 0, 1


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _message(msg: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


def _attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out[kind & 0x7FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return out


def packet_ids(data: bytes) -> tuple[list[int], list[int]]:
    """From a netlink read: the ids of queued packets, and the error codes of NLMSG_ERROR answers (0 = ack)."""
    ids: list[int] = []
    errors: list[int] = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            break
        if kind == NLMSG_ERROR:
            errors.append(-struct.unpack_from("=i", data, offset + 16)[0])
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            header = _attrs(data[offset + 20:offset + length]).get(NFQA_PACKET_HDR)
            if header is not None:
                ids.append(struct.unpack_from("!I", header)[0])
        offset += (length + 3) & ~3
    return ids, errors


class Queue:
    """One bound NFQUEUE: `serve()` holds every packet `delay` seconds and drops `loss` (0..1) of them."""

    def __init__(self, queue: int, delay: float, loss: float, seed: int | None = None) -> None:
        self.queue, self.delay, self.loss = queue, delay, loss
        self.random = random.Random(seed)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self.seq = 0
        self.held: collections.deque[tuple[float, int]] = collections.deque()
        self.passed = self.dropped = 0
        self._config(_attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0)))
        self._config(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)))
        self._config(_attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 16384)))

    def _config(self, attrs: bytes) -> None:
        self.seq += 1
        self.sock.send(_message(NFQNL_MSG_CONFIG, self.queue, attrs, self.seq, NLM_F_REQUEST | NLM_F_ACK))
        while True:
            ids, errors = packet_ids(self.sock.recv(65536))
            now = time.monotonic()
            self.held.extend((now + self.delay, i) for i in ids)
            if errors:
                if errors[0] != 0:
                    raise OSError(errors[0], f"nfqueue {self.queue}: configuration refused")
                return

    def _verdict(self, packet: int, verdict: int) -> None:
        self.seq += 1
        attrs = _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet))
        self.sock.send(_message(NFQNL_MSG_VERDICT, self.queue, attrs, self.seq))

    def serve(self, until: float = float("inf")) -> None:
        while time.monotonic() < until:
            now = time.monotonic()
            while self.held and self.held[0][0] <= now:
                _, packet = self.held.popleft()
                if self.random.random() < self.loss:
                    self.dropped += 1
                    self._verdict(packet, NF_DROP)
                else:
                    self.passed += 1
                    self._verdict(packet, NF_ACCEPT)
            wait = max(0.0, self.held[0][0] - now) if self.held else 0.5
            readable, _, _ = select.select([self.sock], [], [], wait)
            if readable:
                try:
                    data = self.sock.recv(1 << 20)
                except OSError:  # ENOBUFS: the kernel dropped some queue messages; those packets stay dropped
                    continue
                now = time.monotonic()
                ids, _ = packet_ids(data)
                self.held.extend((now + self.delay, i) for i in ids)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.netqueue", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--loss-pct", type=float, default=0.0)
    args = parser.parse_args(argv)
    queue = Queue(args.queue, args.delay_ms / 1000, args.loss_pct / 100)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("bound", flush=True)
    try:
        queue.serve()
    finally:
        print(f"passed {queue.passed} dropped {queue.dropped}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
