"""Fixtures shared by the DLMS reader tests: a simulated meter and sessions with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import Any

import pytest

from edge_agent.adapters.dlms_reader import DlmsSession, session_for
from firmware_bridge.links import BytePipe, SerialLink, TcpLink
from simulators.dlms import DlmsMeter
from simulators.dlms_links import DlmsTcpMeter, HdlcSerialBus
from simulators.runtime import BackgroundLoop
from tests.integration.readers.test_dlms_reader import PASSWORD, PHYSICAL, make_meter

CLIENT_PDU_SIZE = 1024  # a gateway's modest buffer: longer answers come in datablocks
SessionFactory = Callable[..., AbstractContextManager[DlmsSession]]


@pytest.fixture(scope="module")
def loop() -> Iterator[BackgroundLoop]:
    with BackgroundLoop() as background:
        yield background


def _sessions(
    meter: DlmsMeter, open_line: Callable[[], BytePipe], **address: Any
) -> SessionFactory:
    """Sessions with `meter`, each on a line of its own (pipe wrapper, fast or not)."""

    @contextmanager
    def session(
        fast_profile: bool = True, wrap: Callable[[BytePipe], BytePipe] = lambda p: p
    ) -> Iterator[DlmsSession]:
        line = open_line()
        try:
            with session_for(
                wrap(line),
                password=PASSWORD,
                name=meter.serial,
                fast_profile=fast_profile,
                max_receive_pdu_size=CLIENT_PDU_SIZE,
                **address,
            ) as opened:
                yield opened
        finally:
            line.close()

    return session


@pytest.fixture(params=["hdlc", "wrapper"])
def meter_and_sessions(
    request: pytest.FixtureRequest, loop: BackgroundLoop
) -> Iterator[tuple[DlmsMeter, SessionFactory]]:
    """A simulated meter, and a factory of sessions with it."""
    meter = make_meter()
    if request.param == "hdlc":
        bus = HdlcSerialBus([meter], timing=False)
        bus.start_sync()
        try:
            line = partial(SerialLink, bus.port)
            yield meter, _sessions(meter, line, interface="hdlc", physical_address=PHYSICAL)
        finally:
            bus.stop_sync()
        return
    server = DlmsTcpMeter(meter)
    loop.run(server.start())
    try:
        yield (
            meter,
            _sessions(meter, partial(TcpLink, server.host, server.port), interface="wrapper"),
        )
    finally:
        loop.run(server.stop())
