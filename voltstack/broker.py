"""The embedded MQTT broker of one-machine installs (amqtt, in-process).

Production runs Mosquitto or another MQTT 5 broker; `make demo` must need
nothing installed by hand, so it runs amqtt inside the demo process. Only
loopback by default: the demo broker has no credentials.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from amqtt.broker import Broker

log = logging.getLogger(__name__)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def embedded_broker(host: str, port: int) -> AsyncIterator[str]:
    """Run an amqtt broker on host:port for the duration of the block.

    Yields:
        The broker's URL, e.g. "mqtt://127.0.0.1:1883".
    """
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }
    broker = Broker(config)
    await broker.start()
    log.info("embedded MQTT broker listening on %s:%d", host, port)
    try:
        yield f"mqtt://{host}:{port}"
    finally:
        await broker.shutdown()
        # amqtt closes client tasks asynchronously; let them finish.
        await asyncio.sleep(0)
