"""The parts of the multi-host scenario that can be checked alone: the NFQUEUE message parser against hostile
bytes, the relayed PostgreSQL URL, the consumer's table names, the producer's figures per phase, and, as root, the
hosts themselves (a link cut and restored, a delay, teardown) and the cleanup of what an earlier run left behind."""

from __future__ import annotations

import importlib
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from meshbatch import checkout
from testbed import netns, netqueue, order_consumer


@pytest.fixture(scope="module")
def chaos() -> ModuleType:
    return checkout.load("chaos")


def _packet(packet_id: int) -> bytes:
    header = netqueue._attr(netqueue.NFQA_PACKET_HDR, struct.pack("!IHB", packet_id, 0x0800, 3))
    body = struct.pack("=BBH", 0, 0, 0) + header
    kind = (netqueue.NFNL_SUBSYS_QUEUE << 8) | netqueue.NFQNL_MSG_PACKET
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_queued_packets_and_acks_are_read_from_one_netlink_read() -> None:
    ack = struct.pack("=IHHII", 36, netqueue.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", 0) + bytes(16)
    refused = struct.pack("=IHHII", 36, netqueue.NLMSG_ERROR, 0, 2, 0) + struct.pack("=i", -1) + bytes(16)
    ids, errors = netqueue.packet_ids(_packet(7) + _packet(2**32 - 1) + ack + refused)
    assert ids == [7, 2**32 - 1]
    assert errors == [0, 1]


@pytest.mark.parametrize("data", [b"", b"\x00" * 15, b"\x00" * 16, b"\xff" * 40, _packet(9)[:-3],
                                  struct.pack("=IHHII", 8, 0, 0, 0, 0) + _packet(1)])
def test_hostile_netlink_bytes_never_raise(data: bytes) -> None:
    ids, errors = netqueue.packet_ids(data)
    assert all(isinstance(i, int) for i in ids + errors)


def test_random_netlink_bytes_never_raise() -> None:
    rng = random.Random(19)
    for _ in range(2000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
        netqueue.packet_ids(data)
        netqueue.packet_ids(_packet(rng.randrange(2**32)) + data)


def test_the_hosts_reach_postgresql_through_the_relay_with_the_same_credentials(chaos: ModuleType) -> None:
    relayed = importlib.import_module("chaos.multihost").relayed
    assert relayed("postgresql://u:p%40ss@127.0.0.1:5432/test?sslmode=disable", "10.9.8.1", 4000) == \
        "postgresql://u:p%40ss@10.9.8.1:4000/test?sslmode=disable"
    assert relayed("postgresql://127.0.0.1/test", "10.9.8.1", 4000) == "postgresql://10.9.8.1:4000/test"


@pytest.mark.parametrize("table", ["t; DROP TABLE x", "T", "1abc", "a" * 64, "a b", ""])
def test_the_consumer_refuses_a_table_name_that_is_not_a_plain_sql_name(table: str) -> None:
    with pytest.raises(AssertionError):
        order_consumer.insert_sql(table)
    with pytest.raises(SystemExit):
        order_consumer.main(["--listen", "127.0.0.1:0", "--pg", "x", "--table", table, "--host", "b"])


def test_phase_figures_count_answers_failures_and_hosts(chaos: ModuleType) -> None:
    producer_mod = importlib.import_module("chaos.producer")
    producer = producer_mod.Producer("ns", "http://x", ["/a"])
    order = producer_mod.Order
    producer.records = [order("o-1", "/a", "p", 0.0, 0.010, 200, "b"), order("o-2", "/a", "p", 0.0, 0.030, 200, "c"),
                        order("o-3", "/a", "p", 0.0, 1.5, 504, "", "timeout"), order("o-4", "/a", "q", 0.0, 0.0)]
    figures = producer.phase_figures("p")
    assert (figures["sent"], figures["answered"], figures["ok"], figures["failed"]) == (3, 3, 2, {"504": 1})
    assert figures["answered_by"] == {"b": 1, "c": 1}
    assert figures["reasons"] == ["timeout"]
    assert figures["max_ms"] == 30.0
    assert producer.phase_figures("q")["sent"] == 0  # not answered yet


@pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))
def test_leftovers_of_a_run_whose_process_is_gone_are_removed_and_a_live_ones_kept() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead, live = f"{netns.PREFIX}{gone.pid}x", f"{netns.PREFIX}{os.getpid()}x"
    netns.ip("netns", "add", dead)
    netns.ip("netns", "add", live)
    try:
        removed = netns.cleanup_leftovers()
        names = netns.ip("netns", "list").stdout
        assert dead in removed and dead not in names
        assert live in names and live not in removed
    finally:
        netns.ip("netns", "del", dead, check=False)
        netns.ip("netns", "del", live, check=False)


def _in(ns: str, action: Callable[[], object]) -> object:
    """`action()` on a thread moved into namespace `ns`; its result (or exception)."""
    out: list[object] = []

    def run() -> None:
        netns.enter(ns)
        try:
            out.append(action())
        except OSError as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    return out[0]


@pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))
def test_hosts_talk_over_the_bridge_a_cut_link_stops_them_and_close_removes_everything(tmp_path: Path) -> None:
    net = netns.Network(["x", "y"], tmp_path).start()
    x, y = net.hosts["x"], net.hosts["y"]
    try:
        server = _in(x.ns, lambda: socket.create_server((x.address, 0)))
        assert isinstance(server, socket.socket)
        port = server.getsockname()[1]
        with server:
            def connect(timeout: float = 0.5) -> object:
                with socket.create_connection((x.address, port), timeout=timeout):
                    return "connected"

            assert _in(y.ns, lambda: connect(3.0)) == "connected"  # a loaded machine may be slow to answer
            net.cut("x")
            assert isinstance(_in(y.ns, connect), OSError)  # no route through a link that is down
            net.restore("x")  # returns once the link carries packets again
            assert _in(y.ns, lambda: connect(3.0)) == "connected"
            mechanism = net.impair("x", 100, 0)
            assert mechanism in ("netem", "nfqueue")
            started = time.monotonic()
            assert _in(y.ns, lambda: connect(3.0)) == "connected"  # x's SYN-ACK waited 100 ms
            assert time.monotonic() - started >= 0.1
            net.clear("x")
    finally:
        net.close()
    names = netns.ip("netns", "list").stdout + netns.ip("-o", "link", "show").stdout
    assert x.ns not in names and y.ns not in names and net.bridge not in names
