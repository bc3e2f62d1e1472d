"""Simulated DLMS meters read by gurux-dlms's client over the TCP wrapper and HDLC.

gurux's GXDLMSClient (GPL-2, only its public client API) builds the requests;
a small byte loop of ours carries them over a socket or the pty of a
VirtualSerialLine and feeds the answers back to `client.getData`. Values must
equal the meter's ground truth. Faults are observed on the wire with frames
fastcodec builds.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Iterator
from typing import Any, Protocol

import pytest
import serial

from fastcodec import hdlc
from fastcodec.exceptions import ChecksumError
from fastcodec.hdlc import FrameKind
from simulators.clock import SimClock
from simulators.dlms import DlmsMeter
from simulators.dlms_links import DlmsTcpMeter, HdlcSerialBus
from simulators.physics import MeterPhysics
from simulators.runtime import BackgroundLoop

gurux_dlms = pytest.importorskip("gurux_dlms")
from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData  # noqa: E402
from gurux_dlms.enums import Authentication, InterfaceType  # noqa: E402
from gurux_dlms.objects import (  # noqa: E402
    GXDLMSClock,
    GXDLMSData,
    GXDLMSProfileGeneric,
    GXDLMSRegister,
)

pytestmark = pytest.mark.integration

START_S = 1_767_225_600.0  # 2026-01-01 00:00 UTC
NOW_S = START_S + 10 * 86_400 + 12 * 3600 + 7.25  # 2026-01-11 12:00:07.25
PASSWORD = "00000000"
PHYSICAL = 17


def frozen_clock(at_s: float = NOW_S) -> SimClock:
    return SimClock(start=at_s, speed=1e-9)


def make_meter(serial_number: str = "00012345", physical: int = PHYSICAL, **kw: Any) -> DlmsMeter:
    physics = MeterPhysics(seed=int(serial_number), epoch_s=START_S, pv_peak_w=3000)
    return DlmsMeter(
        serial_number,
        physics,
        kw.pop("clock", None) or frozen_clock(),
        password=kw.pop("password", PASSWORD),
        physical_address=physical,
        **kw,
    )


# --- a tiny DLMS master: gurux builds and parses, we move the bytes ----------------


class Pipe(Protocol):
    def write(self, data: bytes) -> None: ...
    def read_some(self) -> bytes: ...


class SerialPipe:
    def __init__(self, port: str) -> None:
        self.port = serial.Serial(port, 9600, timeout=0.01)

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def read_some(self) -> bytes:
        return bytes(self.port.read(max(1, self.port.in_waiting)))

    def collect(self, listen_s: float, quiet_s: float = 0.15) -> bytes:
        """Everything that arrives until `quiet_s` of silence (or `listen_s`)."""
        received, last = b"", time.monotonic()
        deadline = time.monotonic() + listen_s
        while time.monotonic() < deadline:
            chunk = self.read_some()
            if chunk:
                received += chunk
                last = time.monotonic()
            elif received and time.monotonic() - last > quiet_s:
                break
        return received

    def close(self) -> None:
        self.port.close()


class SocketPipe:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=2)
        self.sock.settimeout(0.05)

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_some(self) -> bytes:
        try:
            chunk = self.sock.recv(4096)
        except TimeoutError:
            return b""
        if not chunk:
            raise ConnectionError("closed by the meter")
        return chunk

    def close(self) -> None:
        self.sock.close()


class DlmsError(Exception):
    """The meter answered with a data-access-result (or another error code)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"meter refused: error {code}")
        self.code = code


class GuruxMaster:
    """Drives a GXDLMSClient over a pipe (gurux's media packages are not installed)."""

    def __init__(self, client: GXDLMSClient, pipe: Pipe, timeout_s: float = 3.0) -> None:
        self.client = client
        self.pipe = pipe
        self.timeout_s = timeout_s

    def packet(self, data: Any, reply: GXReplyData) -> None:
        self.pipe.write(bytes(data))
        buffer = GXByteBuffer()
        deadline = time.monotonic() + self.timeout_s
        while True:
            chunk = self.pipe.read_some()
            if chunk:
                buffer.set(chunk)
                if self.client.getData(buffer, reply):
                    return
            elif time.monotonic() > deadline:
                raise TimeoutError("no (complete) answer from the meter")

    def transfer(self, frames: Any) -> GXReplyData:
        reply = GXReplyData()
        for frame in frames if isinstance(frames, list) else [frames]:
            reply.clear()
            self.packet(frame, reply)
            while reply.isMoreData():
                self.packet(self.client.receiverReady(reply), reply)
            if reply.error:
                raise DlmsError(reply.error)
        return reply

    def connect(self) -> None:
        if self.client.interfaceType == InterfaceType.HDLC:
            reply = self.transfer(self.client.snrmRequest())
            self.client.parseUAResponse(reply.data)
        reply = self.transfer(self.client.aarqRequest())
        self.client.parseAareResponse(reply.data)

    def read(self, item: Any, attribute: int) -> Any:
        reply = self.transfer(self.client.read(item, attribute))
        return self.client.updateValue(item, attribute, reply.value)

    def rows_by_range(self, profile: Any, start: dt.datetime, end: dt.datetime) -> list[Any]:
        reply = self.transfer(self.client.readRowsByRange(profile, start, end))
        self.client.updateValue(profile, 2, reply.value)
        return list(profile.buffer)

    def close(self) -> None:
        release = self.client.releaseRequest()
        if release:
            self.transfer(release)
        if self.client.interfaceType == InterfaceType.HDLC:
            self.transfer(self.client.disconnectRequest())


def gurux_client(
    interface: int,
    *,
    password: str | None = PASSWORD,
    physical: int = PHYSICAL,
    address_size: int = 2,
) -> GXDLMSClient:
    authentication = Authentication.LOW if password is not None else Authentication.NONE
    client_address = 1 if password is not None else 16
    server = 1
    if interface == InterfaceType.HDLC:
        server = hdlc.server_address(1, physical if address_size > 1 else 0, address_size)
    client = GXDLMSClient(True, client_address, server, authentication, password, interface)
    if interface == InterfaceType.HDLC:
        client.serverAddressSize = address_size
    return client


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop() -> Iterator[BackgroundLoop]:
    with BackgroundLoop() as background:
        yield background


@pytest.fixture
def tcp_meter(loop: BackgroundLoop) -> Iterator[DlmsTcpMeter]:
    server = DlmsTcpMeter(make_meter())
    loop.run(server.start())
    yield server
    loop.run(server.stop())


@pytest.fixture
def bus() -> Iterator[HdlcSerialBus]:
    line_bus = HdlcSerialBus(
        [make_meter("00012345", PHYSICAL), make_meter("00067890", PHYSICAL + 1)], timing=False
    )
    line_bus.start_sync()
    yield line_bus
    line_bus.stop_sync()


def read_everything(master: GuruxMaster, meter: DlmsMeter) -> None:
    """The reads the issue asks for, checked against the ground truth."""
    truth = meter.presented_values(NOW_S)
    clock = GXDLMSClock("0.0.1.0.0.255")
    read_time = master.read(clock, 2).value
    expected_time = dt.datetime.fromtimestamp(meter.meter_time(NOW_S), dt.UTC)
    assert abs(read_time.timestamp() - expected_time.timestamp()) < 0.02
    serial_number = GXDLMSData("0.0.96.1.0.255")
    assert master.read(serial_number, 2) == meter.serial
    for obis in ("1.0.1.8.0.255", "1.0.32.7.0.255", "1.0.31.7.0.255", "1.0.2.7.0.255"):
        register = GXDLMSRegister(obis)
        master.read(register, 3)
        master.read(register, 2)
        key = "1-0:" + ".".join(obis.split(".")[2:5])
        factor = 1000 if ".8." in key else 1
        assert register.value / factor == pytest.approx(truth[key], abs=1e-9), key
    profile = GXDLMSProfileGeneric("1.0.99.1.0.255")
    master.read(profile, 3)  # capture objects: gurux needs them to read rows
    assert len(profile.captureObjects) == 4
    start = dt.datetime(2026, 1, 11, 9, 0, tzinfo=dt.UTC)
    end = dt.datetime(2026, 1, 11, 10, 59, tzinfo=dt.UTC)
    rows = master.rows_by_range(profile, start, end)
    expected = meter.profile_rows(start.timestamp(), end.timestamp())
    assert len(rows) == len(expected) == 8
    for row, truth_row in zip(rows, expected, strict=True):
        assert row[0].value.timestamp() == truth_row.at_s
        assert (row[1], row[2], row[3]) == (
            truth_row.status,
            truth_row.import_wh,
            truth_row.export_wh,
        )


# --- TCP wrapper ---------------------------------------------------------------------------


def test_gurux_reads_the_meter_over_the_tcp_wrapper(tcp_meter: DlmsTcpMeter) -> None:
    pipe = SocketPipe(tcp_meter.host, tcp_meter.port)
    master = GuruxMaster(gurux_client(InterfaceType.WRAPPER), pipe)
    try:
        master.connect()
        read_everything(master, tcp_meter.meter)
        master.close()
    finally:
        pipe.close()


def test_a_whole_load_profile_comes_in_blocks_over_tcp(tcp_meter: DlmsTcpMeter) -> None:
    pipe = SocketPipe(tcp_meter.host, tcp_meter.port)
    client = gurux_client(InterfaceType.WRAPPER)
    client.maxReceivePDUSize = 256
    master = GuruxMaster(client, pipe)
    try:
        master.connect()
        profile = GXDLMSProfileGeneric("1.0.99.1.0.255")
        master.read(profile, 3)
        reply = master.transfer(client.read(profile, 2))
        client.updateValue(profile, 2, reply.value)
        rows = tcp_meter.meter.profile_rows(0, NOW_S)
        assert len(profile.buffer) == len(rows) == 10 * 96 + 48 + 1
        assert profile.buffer[-1][2] == rows[-1].import_wh
        assert tcp_meter.meter.requests > 100  # one GET-Request-Next per block
        master.close()
    finally:
        pipe.close()


def test_a_wrong_password_is_refused(tcp_meter: DlmsTcpMeter) -> None:
    pipe = SocketPipe(tcp_meter.host, tcp_meter.port)
    master = GuruxMaster(gurux_client(InterfaceType.WRAPPER, password="wrong-pw"), pipe)
    try:
        with pytest.raises(Exception, match=r"(?i)authentication"):
            master.connect()
    finally:
        pipe.close()


def test_the_public_client_reads_the_clock_but_not_the_registers(
    tcp_meter: DlmsTcpMeter,
) -> None:
    pipe = SocketPipe(tcp_meter.host, tcp_meter.port)
    master = GuruxMaster(gurux_client(InterfaceType.WRAPPER, password=None), pipe)
    try:
        master.connect()
        assert master.read(GXDLMSData("0.0.96.1.0.255"), 2) == tcp_meter.meter.serial
        with pytest.raises(DlmsError) as refused:
            master.read(GXDLMSRegister("1.0.1.8.0.255"), 2)
        assert refused.value.code == 3  # read-write-denied
    finally:
        pipe.close()


def test_tcp_faults_silence_and_delay(tcp_meter: DlmsTcpMeter) -> None:
    pipe = SocketPipe(tcp_meter.host, tcp_meter.port)
    master = GuruxMaster(gurux_client(InterfaceType.WRAPPER), pipe, timeout_s=0.5)
    try:
        master.connect()
        tcp_meter.meter.faults.slow_s = 0.3
        started = time.monotonic()
        master.read(GXDLMSData("0.0.96.1.0.255"), 2)
        assert time.monotonic() - started >= 0.3
        tcp_meter.meter.faults.clear()
        tcp_meter.meter.faults.no_answer = True
        with pytest.raises(TimeoutError):
            master.read(GXDLMSData("0.0.96.1.0.255"), 2)
    finally:
        pipe.close()


def test_tcp_inactivity_closes_the_connection(loop: BackgroundLoop) -> None:
    server = DlmsTcpMeter(make_meter(), inactivity_s=0.2)
    loop.run(server.start())
    pipe = SocketPipe(server.host, server.port)
    try:
        master = GuruxMaster(gurux_client(InterfaceType.WRAPPER), pipe)
        master.connect()
        time.sleep(0.4)
        with pytest.raises((ConnectionError, OSError)):
            for _ in range(20):
                pipe.read_some()
                pipe.write(b"\x00")
                time.sleep(0.02)
        assert server.timeouts == 1
    finally:
        pipe.close()
        loop.run(server.stop())


# --- HDLC on a serial line ----------------------------------------------------------------


@pytest.mark.parametrize("address_size", [2, 4])
def test_gurux_reads_the_meter_over_hdlc(bus: HdlcSerialBus, address_size: int) -> None:
    pipe = SerialPipe(bus.port)
    client = gurux_client(InterfaceType.HDLC, address_size=address_size)
    client.hdlcSettings.maxInfoRX = 64  # small frames: answers come segmented
    client.hdlcSettings.maxInfoTX = 64
    client.maxReceivePDUSize = 300  # and big ones in blocks
    master = GuruxMaster(client, pipe)
    try:
        master.connect()
        read_everything(master, bus.meters[PHYSICAL])
        master.close()
    finally:
        pipe.close()


def test_each_meter_on_the_bus_answers_at_its_own_address(bus: HdlcSerialBus) -> None:
    pipe = SerialPipe(bus.port)
    try:
        for physical, meter in bus.meters.items():
            master = GuruxMaster(gurux_client(InterfaceType.HDLC, physical=physical), pipe)
            master.connect()
            assert master.read(GXDLMSData("0.0.96.1.0.255"), 2) == meter.serial
            master.close()
        # Nobody at physical address 40: silence.
        stranger = hdlc.build_frame(
            FrameKind.SNRM, hdlc.server_address(1, 40, 2), 16, destination_address_length=2
        )
        pipe.write(stranger)
        assert pipe.collect(0.3) == b""
    finally:
        pipe.close()


def test_gurux_reads_over_hdlc_at_9600_with_line_timing() -> None:
    meter = make_meter()
    line_bus = HdlcSerialBus([meter], timing=True)
    line_bus.start_sync()
    pipe = SerialPipe(line_bus.port)
    try:
        master = GuruxMaster(gurux_client(InterfaceType.HDLC), pipe)
        started = time.monotonic()
        master.connect()
        register = GXDLMSRegister("1.0.1.8.0.255")
        master.read(register, 3)
        master.read(register, 2)
        assert register.value / 1000 == pytest.approx(meter.presented_values(NOW_S)["1-0:1.8.0"])
        master.close()
        # SNRM/UA, AARQ/AARE, 2 GETs, RLRQ/RLRE, DISC/UA: > 250 bytes at 960 B/s.
        assert time.monotonic() - started > line_bus.line.statistics.busy_s * 0.9 > 0.2
    finally:
        pipe.close()
        line_bus.stop_sync()


# --- faults and events on the wire (frames built with fastcodec) ---------------------------


def snrm(physical: int = PHYSICAL) -> bytes:
    return hdlc.build_frame(
        FrameKind.SNRM, hdlc.server_address(1, physical, 2), 16, destination_address_length=2
    )


def test_dm_when_not_connected_and_ua_to_snrm(bus: HdlcSerialBus) -> None:
    pipe = SerialPipe(bus.port)
    try:
        disc = hdlc.build_frame(
            FrameKind.DISC, hdlc.server_address(1, PHYSICAL, 2), 16, destination_address_length=2
        )
        pipe.write(disc)
        assert hdlc.parse_frame(pipe.collect(1.0)).kind is FrameKind.DM
        pipe.write(snrm())
        ua = hdlc.parse_frame(pipe.collect(1.0))
        assert ua.kind is FrameKind.UA and ua.destination_address == 16
        assert hdlc.parse_parameters(ua.information).max_info_transmit == 128
    finally:
        pipe.close()


def test_hdlc_faults_are_on_the_wire(bus: HdlcSerialBus) -> None:
    meter = bus.meters[PHYSICAL]
    pipe = SerialPipe(bus.port)
    try:
        pipe.write(snrm())
        good = pipe.collect(1.0)
        hdlc.parse_frame(good)

        meter.faults.garble_crc = True
        pipe.write(snrm())
        garbled = pipe.collect(1.0)
        assert len(garbled) == len(good) and garbled[-1] == 0x7E
        with pytest.raises(ChecksumError, match="FCS"):
            hdlc.parse_frame(garbled)

        meter.faults.clear()
        meter.faults.truncate_bytes = 3
        pipe.write(snrm())
        assert len(pipe.collect(1.0)) == len(good) - 3

        meter.faults.clear()
        meter.faults.noise = b"\x00\xff"
        pipe.write(snrm())
        noisy = pipe.collect(1.0)
        assert noisy[:2] == b"\x00\xff" and hdlc.parse_frame(noisy[2:]).kind is FrameKind.UA

        meter.faults.clear()
        meter.faults.slow_s = 0.3
        started = time.monotonic()
        pipe.write(snrm())
        assert hdlc.parse_frame(pipe.collect(2.0)).kind is FrameKind.UA
        assert time.monotonic() - started >= 0.3

        meter.faults.clear()
        meter.faults.no_answer = True
        pipe.write(snrm())
        assert pipe.collect(0.3) == b""
    finally:
        meter.faults.clear()
        pipe.close()


def test_power_down_and_up_are_logged_and_read_over_dlms(bus: HdlcSerialBus) -> None:
    meter = bus.meters[PHYSICAL]
    pipe = SerialPipe(bus.port)
    try:
        meter.faults.powered_down = True
        pipe.write(snrm())
        assert pipe.collect(0.3) == b""  # silence while down
        meter.faults.powered_down = False
        master = GuruxMaster(gurux_client(InterfaceType.HDLC), pipe)
        master.connect()
        event_log = GXDLMSProfileGeneric("0.0.99.98.0.255")
        master.read(event_log, 3)
        reply = master.transfer(master.client.read(event_log, 2))
        master.client.updateValue(event_log, 2, reply.value)
        assert [row[1] for row in event_log.buffer] == [1, 2]  # power down, power up
        meter.tamper()
        event_log.buffer = []
        reply = master.transfer(master.client.read(event_log, 2))
        master.client.updateValue(event_log, 2, reply.value)
        assert [row[1] for row in event_log.buffer] == [1, 2, 40]
        master.close()
    finally:
        pipe.close()


def test_power_outage_leaves_a_gap_and_a_flag_in_the_load_profile() -> None:
    meter = make_meter()
    meter.power_down(START_S + 86_400 + 1000)  # 00:16:40 on day 2
    meter.power_up(START_S + 86_400 + 3000)  # 00:50:00
    rows = meter.profile_rows(START_S + 86_400, START_S + 86_400 + 3600)
    assert [row.at_s - START_S - 86_400 for row in rows] == [0, 900, 3600]
    assert [row.status for row in rows] == [0, 0, 0x80]


def test_clock_drift_is_visible_in_the_clock_read(tcp_meter: DlmsTcpMeter) -> None:
    meter = tcp_meter.meter
    meter.faults.clock_drift_s_per_day = 60.0  # a minute fast per day since install
    pipe = SocketPipe(tcp_meter.host, tcp_meter.port)
    master = GuruxMaster(gurux_client(InterfaceType.WRAPPER), pipe)
    try:
        master.connect()
        read_time = master.read(GXDLMSClock("0.0.1.0.0.255"), 2).value
        assert read_time.timestamp() - NOW_S == pytest.approx(10.5 * 60, abs=0.02)
    finally:
        pipe.close()


def test_hdlc_inactivity_drops_the_connection() -> None:
    line_bus = HdlcSerialBus([make_meter()], timing=False, inactivity_s=0.2)
    line_bus.start_sync()
    pipe = SerialPipe(line_bus.port)
    try:
        master = GuruxMaster(gurux_client(InterfaceType.HDLC), pipe)
        master.connect()
        time.sleep(0.4)
        (request,) = master.client.read(GXDLMSData("0.0.96.1.0.255"), 2)
        pipe.write(bytes(request))
        assert hdlc.parse_frame(pipe.collect(1.0)).kind is FrameKind.DM
        assert line_bus.server.links[0].drops == 1
    finally:
        pipe.close()
        line_bus.stop_sync()


# --- in a fleet -----------------------------------------------------------------------------

FLEET_YAML = """\
seed: 3
timing: false
epoch: 2026-01-01T00:00:00Z
gateways:
  - id: gw-d
    interval_s: 900
    dlms_tcp:
      - name: dlms
        meters:
          - {count: 2, password: "s3cret-pw", clock_drift_s_per_day: 2.5}
    optical:
      - name: probe
        meters:
          - {first_unit: 40}
          - {first_unit: 41, mode_e: false, baud_switch: false}
"""


def test_a_fleet_serves_dlms_meters_and_wires_the_agent(tmp_path: Any) -> None:
    from simulators.fleet import Fleet, load_fleet, truth_of

    (tmp_path / "fleet.yaml").write_text(FLEET_YAML)
    spec = load_fleet(tmp_path / "fleet.yaml")
    with BackgroundLoop() as background:
        fleet = background.run(Fleet.start(spec, tmp_path / "state", clock=frozen_clock()))
        try:
            links = sorted(m.link for m in fleet.meters.values())
            assert links == ["dlms-tcp", "dlms-tcp", "optical", "optical"]
            manifest = fleet.manifest()["meters"]
            assert {m["link"] for m in manifest} == {"dlms-tcp", "optical"}
            config = fleet.agent_config(spec.gateways[0])
            tcp_bus = next(b for b in config["buses"] if b["link"] == "dlms-tcp")
            (entry,) = tcp_bus["meters"]
            assert entry == {
                "serial": entry["serial"],
                "profile": "generic-dlms",
                "client_address": 1,
                "server_address": 1,
                "password": "s3cret-pw",
                "interval_s": 900,
            }
            optical_buses = [b for b in config["buses"] if b["link"] == "optical"]
            assert [b["mode"] for b in optical_buses] == ["E", "C"]
            # The file the fleet wrote is one the agent accepts.
            from edge_agent.config import load_config

            accepted = load_config(fleet.state_dir / "agents" / f"{spec.gateways[0].id}.yaml")
            assert {bus.link for bus in accepted.buses} == {"dlms-tcp", "optical"}
            assert optical_buses[0]["meters"][0]["physical_address"] == 40
            assert optical_buses[1]["meters"][0]["profile"] == "generic-iec62056-21"

            meter = fleet.meters[entry["serial"]]
            host, port = meter.port.rsplit(":", 1)
            pipe = SocketPipe(host, int(port))
            try:
                master = GuruxMaster(
                    gurux_client(InterfaceType.WRAPPER, password="s3cret-pw"), pipe
                )
                master.connect()
                register = GXDLMSRegister("1.0.1.8.0.255")
                master.read(register, 3)
                master.read(register, 2)
                at = fleet.clock.now_datetime()
                truth = truth_of(spec, meter.serial, at)
                assert register.value / 1000 == truth["1-0:1.8.0"]
                assert fleet.truth(meter.serial) == truth
            finally:
                pipe.close()
        finally:
            background.run(fleet.stop())
