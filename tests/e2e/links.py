"""Links that the fault tests can break: a TCP proxy in this process, and a network
namespace with a veth pair (real interfaces, taken down and up with `ip`).

The proxy severs connections the way a reset does (both ends see them close);
the namespace drops packets silently, the way a pulled cable or a dead route
does, so that only keep-alive pings notice. Neither mocks gRPC: the real
client and server talk through them.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
from typing import Iterator


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target` ("host:port"), connection by connection.

    `sever()` closes every forwarded connection at once; while `down`, new
    connections are accepted and closed straight away (the client sees the
    server go away, not a refusal).
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.down = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def sever(self) -> None:
        """Closes every connection forwarded so far."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._listener.close()
        self.sever()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def netns_unavailable_reason() -> str | None:
    """Why this machine cannot run the namespace tests, or None if it can."""
    if os.geteuid() != 0:
        return "needs root to create a network namespace and a veth pair"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` command"
    return None


class NetNamespace:
    """A network namespace of the test's own, joined to this one by a veth pair.

    Inside, `server_ip` (10.X.Y.1/24) on the namespace's end; here, 10.X.Y.2 on
    ours (`host_link`). `down()` and `up()` take our end of the link down and up:
    packets stop, nothing is reset, connection attempts find no route. `close()`
    deletes the namespace (and with it both ends of the pair); it is safe to
    call after a partial setup.
    """

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"tdfault-{os.getpid()}-{tag}"
        self.host_link = f"tdv{tag}h"  # interface names have at most 15 bytes
        self._inner_link = f"tdv{tag}n"
        octets = secrets.token_bytes(2)
        subnet = f"10.{200 + octets[0] % 50}.{octets[1]}"
        self.server_ip = f"{subnet}.1"
        self.host_ip = f"{subnet}.2"
        self._made = False
        try:
            _ip("netns", "add", self.name)
            self._made = True
            _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self._inner_link)
            _ip("link", "set", self._inner_link, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/24", "dev", self.host_link)
            _ip("link", "set", self.host_link, "up")
            _ip("-n", self.name, "addr", "add", f"{self.server_ip}/24", "dev", self._inner_link)
            _ip("-n", self.name, "link", "set", self._inner_link, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def command(self, *argv: str) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def down(self) -> None:
        _ip("link", "set", self.host_link, "down")

    def up(self) -> None:
        _ip("link", "set", self.host_link, "up")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", self.host_link)  # gone already if the namespace took it
        if self._made:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", self.name)
            self._made = False


@contextlib.contextmanager
def net_namespace() -> Iterator[NetNamespace]:
    ns = NetNamespace()
    try:
        yield ns
    finally:
        ns.close()
