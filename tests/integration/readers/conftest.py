"""Fixtures shared by the DLMS reader tests: a simulated meter and sessions with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

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


@pytest.fixture(params=["hdlc", "wrapper"])
def meter_and_sessions(
    request: pytest.FixtureRequest, loop: BackgroundLoop
) -> Iterator[tuple[DlmsMeter, SessionFactory]]:
    """A simulated meter, and a factory of sessions with it (pipe wrapper, fast or not)."""
    meter = make_meter()
    if request.param == "hdlc":
        bus = HdlcSerialBus([meter], timing=False)
        bus.start_sync()

        @contextmanager
        def hdlc_session(
            fast_profile: bool = True, wrap: Callable[[BytePipe], BytePipe] = lambda p: p
        ) -> Iterator[DlmsSession]:
            line = SerialLink(bus.port)
            try:
                with session_for(
                    wrap(line),
                    interface="hdlc",
                    physical_address=PHYSICAL,
                    password=PASSWORD,
                    name=meter.serial,
                    fast_profile=fast_profile,
                    max_receive_pdu_size=CLIENT_PDU_SIZE,
                ) as session:
                    yield session
            finally:
                line.close()

        try:
            yield meter, hdlc_session
        finally:
            bus.stop_sync()
        return
    server = DlmsTcpMeter(meter)
    loop.run(server.start())

    @contextmanager
    def wrapper_session(
        fast_profile: bool = True, wrap: Callable[[BytePipe], BytePipe] = lambda p: p
    ) -> Iterator[DlmsSession]:
        tcp = TcpLink(server.host, server.port)
        try:
            with session_for(
                wrap(tcp),
                interface="wrapper",
                password=PASSWORD,
                name=meter.serial,
                fast_profile=fast_profile,
                max_receive_pdu_size=CLIENT_PDU_SIZE,
            ) as session:
                yield session
        finally:
            tcp.close()

    try:
        yield meter, wrapper_session
    finally:
        loop.run(server.stop())
