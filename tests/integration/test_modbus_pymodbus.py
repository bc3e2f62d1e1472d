"""fastcodec's Modbus RTU codec against the real pymodbus (3.16).

A pymodbus server (datastore: ModbusServerContext / ModbusDeviceContext with
sequential blocks) runs in-process on a free loopback TCP port with the RTU
framer, so RTU ADUs (unit id, PDU, CRC) travel over TCP. The tests send
requests built by fastcodec over a plain socket, cut the reply out of the
stream with RtuSplitter, parse it with fastcodec and compare with what the
server holds (read back through the server's own datastore). pymodbus's RTU
framer must also decode the requests we build.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pymodbus = pytest.importorskip("pymodbus")

from pymodbus.client.mixin import ModbusClientMixin  # noqa: E402
from pymodbus.datastore import (  # noqa: E402
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.framer import FramerType  # noqa: E402
from pymodbus.framer.rtu import FramerRTU  # noqa: E402
from pymodbus.pdu import DecodePDU  # noqa: E402
from pymodbus.server import ModbusTcpServer  # noqa: E402

from tests.servers import free_port  # noqa: E402

pytestmark = pytest.mark.integration

UNIT_ID = 1
BLOCK_SIZE = 300  # registers and bits mapped from protocol address 0
IO_TIMEOUT_S = 5.0
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

INPUT_REGISTERS = [random.Random(502).randrange(0x10000) for _ in range(BLOCK_SIZE)]
DISCRETE_INPUTS = [random.Random(485).random() < 0.5 for _ in range(BLOCK_SIZE)]


@dataclass
class RunningServer:
    port: int
    loop: asyncio.AbstractEventLoop
    server: ModbusTcpServer

    def held(self, function: int, address: int, count: int) -> list[int] | list[bool]:
        """What the server's datastore holds, read through pymodbus itself."""
        future = asyncio.run_coroutine_threadsafe(
            self.server.async_getValues(UNIT_ID, function, address, count), self.loop
        )
        return list(future.result(IO_TIMEOUT_S))


@pytest.fixture(scope="module")
def pymodbus_server() -> Iterator[RunningServer]:
    """A pymodbus TCP server with the RTU framer, in its own event loop thread."""
    port = free_port()
    loop = asyncio.new_event_loop()
    started: list[ModbusTcpServer] = []

    async def start() -> None:
        # pymodbus's sequential blocks start at address 1 for protocol address 0.
        device = ModbusDeviceContext(
            co=ModbusSequentialDataBlock(1, [False] * BLOCK_SIZE),
            di=ModbusSequentialDataBlock(1, list(DISCRETE_INPUTS)),
            hr=ModbusSequentialDataBlock(1, [0] * BLOCK_SIZE),
            ir=ModbusSequentialDataBlock(1, list(INPUT_REGISTERS)),
        )
        context = ModbusServerContext(devices={UNIT_ID: device})
        server = ModbusTcpServer(context, framer=FramerType.RTU, address=("127.0.0.1", port))
        await server.serve_forever(background=True)
        started.append(server)

    thread = threading.Thread(target=loop.run_forever, name="pymodbus-server", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(start(), loop).result(IO_TIMEOUT_S)
        yield RunningServer(port, loop, started[0])
    finally:
        if started:
            asyncio.run_coroutine_threadsafe(started[0].shutdown(), loop).result(IO_TIMEOUT_S)

        async def drain() -> None:
            # Let the transports close before the loop stops.
            await asyncio.sleep(0.05)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(drain(), loop).result(IO_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(IO_TIMEOUT_S)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.fixture
def link(pymodbus_server: RunningServer) -> Iterator[socket.socket]:
    """A plain TCP socket to the server."""
    with socket.create_connection(("127.0.0.1", pymodbus_server.port), IO_TIMEOUT_S) as sock:
        yield sock


def exchange(modbus: ModuleType, sock: socket.socket, request: bytes) -> bytes:
    """Send one request, return the one reply cut out of the stream by RtuSplitter."""
    sock.sendall(request)
    splitter = modbus.RtuSplitter(modbus.Expect.RESPONSES)
    while True:
        frame = splitter.next_frame()
        if frame is not modbus.NEED_DATA:
            assert splitter.discarded_noise_bytes == 0
            return bytes(frame)
        chunk = sock.recv(512)
        if not chunk:
            raise ConnectionError("pymodbus closed the connection")
        splitter.feed(chunk)


@EXAMPLES
@given(data=st.data())
def test_written_registers_read_back_equal_what_the_server_holds(
    modbus: ModuleType, pymodbus_server: RunningServer, link: socket.socket, data: st.DataObject
) -> None:
    count = data.draw(st.integers(1, 123), label="count")
    address = data.draw(st.integers(0, BLOCK_SIZE - count), label="address")
    values = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=count, max_size=count))

    echo = modbus.parse_response(
        exchange(modbus, link, modbus.build_write_multiple_registers(UNIT_ID, address, values))
    )
    assert echo == modbus.WriteMultipleResponse(UNIT_ID, 16, address, count)

    reply = exchange(modbus, link, modbus.build_read_holding_registers(UNIT_ID, address, count))
    response = modbus.parse_response(reply, quantity=count)
    assert list(response.registers) == values
    assert list(response.registers) == pymodbus_server.held(3, address, count)


@EXAMPLES
@given(data=st.data())
def test_input_registers_and_discrete_inputs_match(
    modbus: ModuleType, pymodbus_server: RunningServer, link: socket.socket, data: st.DataObject
) -> None:
    count = data.draw(st.integers(1, 125), label="count")
    address = data.draw(st.integers(0, BLOCK_SIZE - count), label="address")
    reply = exchange(modbus, link, modbus.build_read_input_registers(UNIT_ID, address, count))
    registers = list(modbus.parse_response(reply, quantity=count).registers)
    assert registers == INPUT_REGISTERS[address : address + count]
    assert registers == pymodbus_server.held(4, address, count)

    bit_count = data.draw(st.integers(1, BLOCK_SIZE - address), label="bits")
    reply = exchange(modbus, link, modbus.build_read_discrete_inputs(UNIT_ID, address, bit_count))
    bits = list(modbus.parse_response(reply, quantity=bit_count).bits)
    assert bits == DISCRETE_INPUTS[address : address + bit_count]


@EXAMPLES
@given(data=st.data())
def test_written_coils_read_back(
    modbus: ModuleType, pymodbus_server: RunningServer, link: socket.socket, data: st.DataObject
) -> None:
    states = data.draw(st.lists(st.booleans(), min_size=1, max_size=BLOCK_SIZE))
    address = data.draw(st.integers(0, BLOCK_SIZE - len(states)), label="address")
    echo = modbus.parse_response(
        exchange(modbus, link, modbus.build_write_multiple_coils(UNIT_ID, address, states))
    )
    assert echo == modbus.WriteMultipleResponse(UNIT_ID, 15, address, len(states))
    reply = exchange(modbus, link, modbus.build_read_coils(UNIT_ID, address, len(states)))
    bits = list(modbus.parse_response(reply, quantity=len(states)).bits)
    assert bits == states
    assert bits == [bool(bit) for bit in pymodbus_server.held(1, address, len(states))]

    single = modbus.build_write_single_coil(UNIT_ID, address, not states[0])
    echo = modbus.parse_response(exchange(modbus, link, single))
    assert echo == modbus.WriteSingleCoilResponse(UNIT_ID, address, not states[0])


@EXAMPLES
@given(
    values=st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=20),
    order=st.sampled_from(["ABCD", "CDAB"]),
    address=st.integers(0, BLOCK_SIZE - 40),
)
def test_float32_agrees_with_pymodbus_convert_from_registers(
    modbus: ModuleType,
    pymodbus_server: RunningServer,
    link: socket.socket,
    values: list[float],
    order: str,
    address: int,
) -> None:
    register_order = modbus.RegisterOrder(order)
    payload = b"".join(
        modbus.encode_value(value, modbus.DataType.FLOAT32, register_order) for value in values
    )
    registers = [int.from_bytes(payload[i : i + 2], "big") for i in range(0, len(payload), 2)]
    exchange(modbus, link, modbus.build_write_multiple_registers(UNIT_ID, address, registers))
    reply = exchange(
        modbus, link, modbus.build_read_holding_registers(UNIT_ID, address, len(registers))
    )
    ours = modbus.decode_floats(modbus.parse_response(reply).payload, register_order)
    # pymodbus names ABCD word_order "big" and CDAB (low word first) "little".
    theirs = ModbusClientMixin.convert_from_registers(
        pymodbus_server.held(3, address, len(registers)),
        ModbusClientMixin.DATATYPE.FLOAT32,
        word_order="big" if order == "ABCD" else "little",
    )
    theirs = theirs if isinstance(theirs, list) else [theirs]
    assert ours == theirs == values


def test_unmapped_address_gives_an_exception_response(
    modbus: ModuleType, link: socket.socket
) -> None:
    request = modbus.build_read_holding_registers(UNIT_ID, BLOCK_SIZE + 10, 4)
    response = modbus.parse_response(exchange(modbus, link, request))
    assert response == modbus.ExceptionResponse(UNIT_ID, 3, 2)
    assert response.exception_name == "ILLEGAL_DATA_ADDRESS"


def test_device_identification_reply_parses(modbus: ModuleType, link: socket.socket) -> None:
    response = modbus.parse_response(
        exchange(modbus, link, modbus.build_read_device_identification(UNIT_ID))
    )
    assert isinstance(response, modbus.DeviceIdentificationResponse)
    assert response.unit_id == UNIT_ID
    assert response.read_device_id_code == 1


# --- pymodbus's own RTU framer decodes what we build ----------------------------

READ_BUILDERS = {
    1: "build_read_coils",
    2: "build_read_discrete_inputs",
    3: "build_read_holding_registers",
    4: "build_read_input_registers",
}


@settings(max_examples=150, deadline=None)
@given(
    unit_id=st.integers(1, 247),
    function=st.sampled_from([1, 2, 3, 4]),
    address=st.integers(0, 65535),
    data=st.data(),
)
def test_pymodbus_framer_decodes_our_read_requests(
    modbus: ModuleType, unit_id: int, function: int, address: int, data: st.DataObject
) -> None:
    limit = 2000 if function <= 2 else 125
    count = data.draw(st.integers(1, min(limit, 65536 - address)), label="count")
    frame = getattr(modbus, READ_BUILDERS[function])(unit_id, address, count)
    used, pdu = FramerRTU(DecodePDU(True)).handleFrame(frame, 0, 0)
    assert used == len(frame)
    assert (pdu.dev_id, pdu.function_code, pdu.address, pdu.count) == (
        unit_id,
        function,
        address,
        count,
    )


@settings(max_examples=100, deadline=None)
@given(
    unit_id=st.integers(0, 247),
    address=st.integers(0, 65535 - 123),
    registers=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=123),
    coils=st.lists(st.booleans(), min_size=1, max_size=1968),
)
def test_pymodbus_framer_decodes_our_write_requests(
    modbus: ModuleType, unit_id: int, address: int, registers: list[int], coils: list[bool]
) -> None:
    framer = FramerRTU(DecodePDU(True))
    _, pdu = framer.handleFrame(
        modbus.build_write_multiple_registers(unit_id, address, registers), 0, 0
    )
    assert (pdu.dev_id, pdu.function_code, pdu.address, pdu.registers) == (
        unit_id,
        16,
        address,
        registers,
    )
    coil_address = min(address, 65536 - len(coils))
    _, pdu = framer.handleFrame(
        modbus.build_write_multiple_coils(unit_id, coil_address, coils), 0, 0
    )
    assert (pdu.function_code, pdu.address, pdu.count) == (15, coil_address, len(coils))
    assert list(pdu.bits)[: len(coils)] == coils
    _, pdu = framer.handleFrame(modbus.build_write_single_register(unit_id, address, 4242), 0, 0)
    assert (pdu.function_code, pdu.address, pdu.registers) == (6, address, [4242])
    _, pdu = framer.handleFrame(modbus.build_write_single_coil(unit_id, address, True), 0, 0)
    assert (pdu.function_code, pdu.address, pdu.bits) == (5, address, [True])
