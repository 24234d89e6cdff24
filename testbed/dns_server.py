"""A tiny authoritative DNS server over UDP for the tests: the zone is a dict the test edits while it runs
((name, type) -> rdata texts, TTL 1 s); names not in it answer NXDOMAIN. Binds a free port on `host`."""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

Zone = dict[tuple[str, str], list[str]]  # (name, type) -> rdata texts


class TinyDns:
    """An authoritative UDP server for a dict zone; names not in it are NXDOMAIN. TTL 1 s."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.zone: Zone = {}
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text()
            kind = dns.rdatatype.to_text(question.rdtype)
            self.queries += 1
            records = self.zone.get((name, kind))
            if records:
                response.answer.append(dns.rrset.from_text_list(name, 1, "IN", kind, records))
            elif not any(n == name for n, _ in self.zone):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()


__all__ = ["TinyDns", "Zone"]
