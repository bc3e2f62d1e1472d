"""A link that opens on first use and reopens after a loss (real TCP sockets)."""

from __future__ import annotations

import socket
import threading

import pytest

from firmware_bridge.exceptions import LinkClosed, LinkOpenError
from firmware_bridge.links import ReconnectingLink, TcpLink
from tests.servers import free_port


class EchoServer:
    """Echoes one line per connection, then closes it (like an idle-closing gateway)."""

    def __init__(self, port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", port))
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with connection:
                data = connection.recv(64)
                connection.sendall(data)

    def close(self) -> None:
        self.listener.close()
        self._thread.join(timeout=2)


def test_opens_late_reopens_after_a_loss_and_backs_off() -> None:
    port = free_port()
    link = ReconnectingLink(
        lambda: TcpLink("127.0.0.1", port, connect_timeout_s=1),
        character_time_s=0.0,
        name="tcp meter",
    )
    try:
        with pytest.raises(LinkOpenError):  # nobody listens yet: the agent still starts
            link.write(b"x")
        with pytest.raises(LinkOpenError, match="not reopened yet"):
            link.write(b"x")  # within its back-off: no new attempt
        server = EchoServer(port)
        try:
            link._retry_at = 0.0  # the back-off has passed
            link.write(b"ping")
            assert link.read(64, 2.0) == b"ping"
            with pytest.raises(LinkClosed):  # the server closed the connection
                link.read(64, 2.0)
            link.write(b"again")  # reopened on the next use
            assert link.read(64, 2.0) == b"again"
            assert server.connections == 2 and link.reopens == 2
        finally:
            server.close()
    finally:
        link.close()
