"""free_port: ports for child servers come from below the ephemeral range and are bindable."""

from __future__ import annotations

import socket
from pathlib import Path

from ketenmonitor.infra.worker_process import free_port


def _ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_consecutive_free_ports_are_all_bindable_and_below_the_ephemeral_range():
    port = free_port(consecutive=3)
    assert port + 2 < _ephemeral_low()
    sockets = [socket.socket() for _ in range(3)]
    try:
        for i, s in enumerate(sockets):
            s.bind(("127.0.0.1", port + i))
    finally:
        for s in sockets:
            s.close()


def test_a_port_held_by_a_bound_socket_is_never_given():
    held = []
    try:
        for _ in range(50):
            port = free_port()
            s = socket.socket()
            s.bind(("127.0.0.1", port))  # raises if free_port gave a port already held
            held.append(s)
        assert len({s.getsockname()[1] for s in held}) == 50
    finally:
        for s in held:
            s.close()
