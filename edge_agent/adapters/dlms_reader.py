"""Read a DLMS/COSEM meter (logical names) over HDLC or the TCP wrapper, as readings.

Strategy: gurux-dlms's `GXDLMSClient` builds the requests and parses the
answers (SNRM/UA, AARQ/AARE, GET with block transfer and HDLC segmentation,
RLRQ, DISC); our byte loop (`DlmsSession._transfer`) carries them over a
`firmware_bridge` pipe — gurux's media packages are not used — sends
`receiverReady` while gurux says more data follows, and bounds every wait.

The hot path, profile buffers by range (`DlmsSession.get_by_range`), leaves
gurux out: the GET is built by fastcodec.apdu and carried by
`firmware_bridge.dlms_link` (fastcodec's HDLC I frames, or the wrapper), the
datablocks joined by fastcodec's BlockReassembler; gurux's generic decode of the
answer (~760 µs for 24 rows) never runs. The HDLC sequence numbers are taken
from gurux's client settings before the GET and handed back after it, so
gurux's next frames stay in sequence. An answer that path does not decode
(ciphered, with-list, …) is asked again through gurux, with the reason logged.

What gurux decodes and what fastcodec decodes (docs/dlms-reader.md): values
come out of gurux's reply as plain numbers; the clock and the profile
buffers are taken from gurux's reply as the raw Data encoding and decoded by
fastcodec (`axdr.decode_date_time`, `axdr.decode_capture_buffer`: aware
datetimes with their clock status, column by column), never through gurux's
object model (`updateValue`, GXDateTime).

Units: registers are scaled with their scaler_unit (attribute 3, read once
per meter and cached) and converted to the device profile's unit for the
OBIS code (Wh → kWh, varh → kvarh, …).

Security: `SecurityStrategy` configures the association. `NoSecurity` and
`LowSecurity` (LLS password) ship; HLS (GMAC, SHA-256) and ciphering plug in
there: `configure` sets gurux's authentication, keys and system title,
`after_association` runs the HLS challenge (pass 3/4) once the AARE is in.

Errors say whose fault (firmware_bridge.exceptions): `DlmsTimeout`,
`AssociationRejected` (with the AARE diagnostic), `DataAccessError` (with the
data-access-result), `LinkClosed`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData  # type: ignore[import-untyped]
from gurux_dlms.enums import (  # type: ignore[import-untyped]
    Authentication,
    Command,
    InterfaceType,
    Security,
)
from gurux_dlms.objects import (  # type: ignore[import-untyped]
    GXDLMSClock,
    GXDLMSProfileGeneric,
    GXDLMSRegister,
)

from edge_agent.domain.readings import QualityFlag, Reading
from edge_agent.profiles import DeviceProfile, load_profile
from fastcodec import apdu, axdr, hdlc
from fastcodec.exceptions import CodecError
from firmware_bridge import dlms_link
from firmware_bridge.dlms_link import DlmsLinkStatistics, HdlcSequence
from firmware_bridge.exceptions import (
    AssociationRejected,
    DataAccessError,
    DlmsError,
    DlmsTimeout,
    LinkError,
)
from firmware_bridge.links import BytePipe

log = logging.getLogger(__name__)

__all__ = [
    "CLOCK",
    "EVENT_LOG",
    "LOAD_PROFILE",
    "DlmsMeterReader",
    "DlmsSession",
    "LowSecurity",
    "MeterEvent",
    "MeterRead",
    "NoSecurity",
    "ProfileFailure",
    "RegisterFailure",
    "SecurityStrategy",
    "register_codes",
    "session_for",
]

CLOCK = "0-0:1.0.0.255"
LOAD_PROFILE = "1-0:99.1.0.255"
EVENT_LOG = "0-0:99.98.0.255"
_CLASS_CLOCK, _CLASS_REGISTER, _CLASS_DATA, _CLASS_PROFILE_GENERIC = 8, 3, 1, 7

# DLMS unit codes (Blue Book, table "Enumerated values for physical units").
_UNIT_TEXT = {
    27: "W",
    28: "VA",
    29: "var",
    30: "Wh",
    31: "VAh",
    32: "varh",
    33: "A",
    35: "V",
    44: "Hz",
    255: "",
}
# (meter unit, profile unit) → factor to multiply by.
_CONVERSIONS = {
    ("Wh", "kWh"): 1e-3,
    ("varh", "kvarh"): 1e-3,
    ("VAh", "kVAh"): 1e-3,
    ("W", "kW"): 1e-3,
    ("kWh", "Wh"): 1e3,
    ("kW", "W"): 1e3,
}
# AMR profile status bits (0-0:96.10.1.255, IDIS/DSMR): what each says of the row.
_STATUS_FLAGS = (
    (0x01, QualityFlag.METER_ERROR),  # critical error
    (0x02, QualityFlag.CLOCK_INVALID),  # clock invalid
    (0x04, QualityFlag.METER_ERROR),  # data not valid
    (0x20, QualityFlag.CLOCK_ADJUSTED),  # clock adjusted
    (0x80, QualityFlag.INCOMPLETE_PERIOD),  # power down in the period
)
_CLOCK_STATUS_INVALID = 0x01 | 0x02 | 0x08  # invalid value, doubtful value, invalid status
_EVENT_NAMES = {1: "power down", 2: "power up", 40: "terminal cover opened"}


def obis_text(logical_name: bytes) -> str:
    """`A-B:C.D.E` (with `.F` when F is not 255) of a 6-octet logical name."""
    a, b, c, d, e, f = logical_name
    return f"{a}-{b}:{c}.{d}.{e}" + ("" if f == 255 else f".{f}")


def _dotted(obis: str) -> str:
    """gurux's form `A.B.C.D.E.F` of `A-B:C.D.E[.F]`."""
    medium_channel, _, rest = obis.partition(":")
    parts = medium_channel.split("-") + rest.split(".")
    if len(parts) == 5:
        parts.append("255")
    if len(parts) != 6 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{obis!r} is not an OBIS code like 1-0:1.8.0")
    return ".".join(parts)


def _short(obis: str) -> str:
    return obis[:-4] if obis.endswith(".255") else obis


def _logical_name(obis: str) -> bytes:
    """The 6 octets of `A-B:C.D.E[.F]`."""
    return bytes(int(part) for part in _dotted(obis).split("."))


# --- security: the extension point ------------------------------------------------------


class SecurityStrategy(Protocol):
    """How an association is secured. HLS and ciphering implement this later."""

    @property
    def name(self) -> str:
        """For messages: "none", "low", "high-gmac", …"""
        ...

    def configure(self, client: Any) -> None:
        """Set gurux's client up before the AARQ (authentication, keys, system title)."""
        ...

    def after_association(self, session: DlmsSession) -> None:
        """Finish the association once the AARE is in (HLS: the challenge, pass 3/4)."""
        ...


@dataclass(frozen=True)
class NoSecurity:
    """The public client: no authentication."""

    name: str = "none"

    def configure(self, client: Any) -> None:
        client.authentication = Authentication.NONE
        client.password = None

    def after_association(self, session: DlmsSession) -> None:
        pass


@dataclass(frozen=True)
class LowSecurity:
    """LLS: the password travels in the AARQ (IEC 62056-5-3 §9.2.2.2.2)."""

    password: str = field(repr=False)
    name: str = "low"

    def configure(self, client: Any) -> None:
        client.authentication = Authentication.LOW
        client.password = self.password.encode("ascii")

    def after_association(self, session: DlmsSession) -> None:
        pass


# --- the session: gurux builds and parses, we move the bytes ---------------------------


class DlmsSession:
    """One association with one meter over a pipe (context manager: open, then close).

    Args:
        pipe: the link (an HDLC line, optical port in mode E, or a TCP connection).
        interface: "hdlc" or "wrapper" (IEC 62056-47 over TCP).
        client_address: 1 management (LLS), 16 public.
        server_address: the logical device (upper HDLC address, wrapper wPort).
        physical_address: the lower HDLC address (None: a 1-byte address, one
            meter behind the port, e.g. the optical probe).
        security: how the association is secured.
        timeout_s: the longest wait for one answer.
        name: the meter, in messages.
        fast_profile: profile buffers by range through fastcodec's framing and
            decoding (the hot path); False keeps every GET on gurux.
        max_receive_pdu_size: the largest APDU we accept, proposed in the AARQ
            (None: gurux's 65535); a meter sends longer answers in datablocks.
    """

    def __init__(
        self,
        pipe: BytePipe,
        *,
        interface: Literal["hdlc", "wrapper"],
        client_address: int = 1,
        server_address: int = 1,
        physical_address: int | None = None,
        security: SecurityStrategy | None = None,
        timeout_s: float = 3.0,
        name: str = "meter",
        fast_profile: bool = True,
        max_receive_pdu_size: int | None = None,
    ) -> None:
        self.pipe, self.interface, self.name = pipe, interface, name
        self.timeout_s = timeout_s
        self.security: SecurityStrategy = security or NoSecurity()
        self.requests = 0
        self.late_answers = 0  # answers to an earlier request, skipped (see _exchange)
        self._last_timed_out = False
        self.fast_profile = fast_profile
        self.link_statistics = DlmsLinkStatistics()
        self._client_address = client_address
        if interface == "hdlc":
            size = 1 if physical_address is None else (2 if physical_address < 0x80 else 4)
            server = hdlc.server_address(server_address, physical_address or 0, size)
            kind = InterfaceType.HDLC
        else:
            size, server, kind = 0, server_address, InterfaceType.WRAPPER
        self.client: Any = GXDLMSClient(
            True, client_address, server, Authentication.NONE, None, kind
        )
        if size:
            self.client.serverAddressSize = size
        self._server_address, self._server_address_size = server, size
        if max_receive_pdu_size is not None:
            self.client.maxReceivePDUSize = max_receive_pdu_size
        self.security.configure(self.client)
        self.connected = False
        self._hdlc_connected = False

    def __enter__(self) -> DlmsSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """SNRM/UA (HDLC), AARQ/AARE, then the security's last steps.

        Raises:
            DlmsTimeout, AssociationRejected, LinkError.
        """
        self.pipe.discard_input()
        if self.interface == "hdlc":
            reply = self._transfer(self.client.snrmRequest(), "SNRM")
            self.client.parseUAResponse(reply.data)
            self._hdlc_connected = True
        reply = self._transfer(self.client.aarqRequest(), "AARQ", expect=Command.AARE)
        try:
            self.client.parseAareResponse(reply.data)
        except Exception as exc:  # gurux raises GXDLMSException (and others) here
            diagnostic = getattr(exc, "diagnostic", None)
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise AssociationRejected(
                self.name,
                f"association refused ({self.security.name} authentication): {detail}",
                diagnostic if isinstance(diagnostic, int) else None,
            ) from exc
        self.connected = True
        self.security.after_association(self)

    def close(self) -> None:
        """RLRQ and DISC. A meter that answered everything so far is waited for
        as long as any answer: a slow meter's late RLRE would otherwise reach
        the next session. After a timeout the meter gets 1 s each, as it may
        be gone (a late answer is then skipped by the next AARQ); the release
        is still sent, so a meter that is only slow frees its association."""
        wait_s = min(self.timeout_s, 1.0) if self._last_timed_out else self.timeout_s
        try:
            if self.connected:
                self.connected = False
                release = self.client.releaseRequest()
                if release:
                    self._transfer(release, "RLRQ", wait_s, expect=Command.RELEASE_RESPONSE)
            if self._hdlc_connected:
                self._hdlc_connected = False
                self._transfer(self.client.disconnectRequest(), "DISC", wait_s)
        except (DlmsError, LinkError) as exc:
            log.debug("%s: release: %s", self.name, exc)

    def end_session_left_open(self) -> bool:
        """DISC for an HDLC session that another process left open (it died in
        it): True when the meter answered (UA, or DM if none was open)."""
        try:
            self._transfer(self.client.disconnectRequest(True), "DISC", min(self.timeout_s, 1.0))
        except (DlmsError, LinkError) as exc:
            log.debug("%s: DISC of a session left open: %s", self.name, exc)
            return False
        return True

    def _exchange(
        self, frame: Any, reply: Any, what: str, timeout_s: float, expect: int | None
    ) -> None:
        """Send one frame and read until gurux has the whole answer.

        `expect` (a gurux Command) skips complete answers of another kind: on
        the TCP wrapper nothing else tells a late answer to an earlier request
        (a slow meter's RLRE after we stopped waiting) from the one we want.
        """
        data = bytes(frame)
        log.debug("%s -> %s", self.name, data.hex(" "))
        self.pipe.write(data)
        self.requests += 1
        self._last_timed_out = False
        buffer = GXByteBuffer()
        deadline = time.monotonic() + timeout_s
        while True:
            if buffer.available() and self._complete(buffer, reply, what):
                if expect is None or reply.command == expect:
                    return
                self.late_answers += 1
                log.info(
                    "%s: skipped a late answer (%s) waiting for %s", self.name, reply.command, what
                )
                reply.clear()
                buffer.trim()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._last_timed_out = True
                raise DlmsTimeout(
                    self.name, f"no (complete) answer to {what} within {timeout_s:g} s"
                )
            chunk = self.pipe.read(4096, remaining)
            if chunk:
                log.debug("%s <- %s", self.name, chunk.hex(" "))
                buffer.set(chunk)

    def _complete(self, buffer: Any, reply: Any, what: str) -> bool:
        try:
            return bool(self.client.getData(buffer, reply))
        except Exception as exc:  # gurux: ValueError, GXDLMSException on a bad answer
            raise DataAccessError(self.name, f"unreadable answer to {what}: {exc}") from exc

    def _transfer(
        self, frames: Any, what: str, timeout_s: float | None = None, expect: int | None = None
    ) -> Any:
        reply = GXReplyData()
        wait_s = timeout_s or self.timeout_s
        for frame in frames if isinstance(frames, list) else [frames]:
            reply.clear()
            self._exchange(frame, reply, what, wait_s, expect)
            while reply.isMoreData():
                self._exchange(self.client.receiverReady(reply), reply, what, wait_s, None)
            if reply.error:
                raise DataAccessError(
                    self.name, f"{what} refused: data-access-result {reply.error}", reply.error
                )
        return reply

    def get(self, item: Any, attribute: int) -> Any:
        """GET one attribute; gurux's plain value (numbers, bytes, lists).

        Raises:
            DataAccessError: the meter refused (read-write-denied, undefined object, …).
            DlmsTimeout: no answer.
        """
        what = f"GET {item.logicalName}/{attribute}"
        return self._transfer(self.client.read(item, attribute), what).value

    def set(self, item: Any, attribute: int) -> None:
        """SET one attribute to the value `item` holds (gurux builds the request).

        Raises:
            DataAccessError: the meter refused.
            DlmsTimeout: no answer.
        """
        self._transfer(self.client.write(item, attribute), f"SET {item.logicalName}/{attribute}")

    def get_raw(self, frames: Any, what: str) -> bytes:
        """Run a GET and return the answer's raw Data encoding (for fastcodec)."""
        reply = self._transfer(frames, what)
        return bytes(reply.data.array())

    def get_by_range(
        self, class_id: int, obis: str, attribute: int, start: dt.datetime, end: dt.datetime
    ) -> bytes:
        """A profile's buffer rows captured in [start, end]: the raw Data encoding.

        Through fastcodec's framing when `fast_profile` (the hot path), through
        gurux otherwise or when the meter's answer is not one fastcodec's path
        handles (logged, counted in `link_statistics.fallbacks`).

        Raises:
            DataAccessError: the meter refused (data-access-result, exception response).
            DlmsTimeout, DlmsError: no answer, or the link was lost.
        """
        what = f"GET {_short(obis)}/{attribute} by range"
        start_utc, end_utc = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
        if self.fast_profile and self._fast_path_usable():
            request = apdu.GetRequestNormal(
                apdu.CosemAttributeDescriptor(class_id, _logical_name(obis), attribute),
                apdu.profile_range(start_utc, end_utc),
                apdu.make_invoke_id_and_priority(self.client.settings.invokeId & 0x0F),
            )
            outcome = self._fast_get(request, what)
            if isinstance(outcome, bytes):
                return outcome
            self.link_statistics.fallbacks += 1
            log.warning("%s: %s: asking through gurux: %s", self.name, what, outcome.reason)
        frames = self.client.readRowsByRange(
            GXDLMSProfileGeneric(_dotted(obis)), start_utc, end_utc
        )
        return self.get_raw(frames, what)

    def _fast_path_usable(self) -> bool:
        # Ciphered APDUs (HLS with glo/ded ciphering) are gurux's to build and open.
        cipher = self.client.settings.cipher
        return self.connected and (cipher is None or cipher.security == Security.NONE)

    def _fast_get(self, request: apdu.GetRequestNormal, what: str) -> bytes | dlms_link.Unhandled:
        link: dlms_link.ApduLink
        sent_before = self.link_statistics.frames_sent
        settings = self.client.settings
        sequence: HdlcSequence | None = None
        if self.interface == "wrapper":
            link = dlms_link.WrapperApduLink(
                self.pipe,
                client_wport=self._client_address,
                server_wport=self._server_address,
                timeout_s=self.timeout_s,
                name=self.name,
                statistics=self.link_statistics,
            )
        else:
            sequence = _sequence_from_gurux(settings)
            link = dlms_link.HdlcApduLink(
                self.pipe,
                client_address=self._client_address,
                server_address=self._server_address,
                server_address_length=self._server_address_size,
                sequence=sequence,
                max_info_transmit=settings.hdlc.maxInfoTX,
                timeout_s=self.timeout_s,
                name=self.name,
                statistics=self.link_statistics,
            )
        try:
            answer = dlms_link.get(link, request, what)
        except DlmsTimeout:
            self._last_timed_out = True  # close() then waits briefly for a silent meter
            raise
        finally:
            if sequence is not None:  # gurux frames the next request: it continues our numbering
                _sequence_to_gurux(settings, sequence)
            self.requests += self.link_statistics.frames_sent - sent_before
        self._last_timed_out = False
        return answer


def _sequence_from_gurux(settings: Any) -> HdlcSequence:
    """V(S)/V(R) from gurux's last control fields sent and received.

    gurux keeps the control byte of its last frame sent (`senderFrame`: N(R) in
    bits 7-5, P/F 0x10, N(S) of its last I frame in bits 3-1, bit 0 set after an
    RR) and of the last I frame received (`receiverFrame`).
    """
    sender, receiver = int(settings.senderFrame), int(settings.receiverFrame)
    return HdlcSequence(
        send=((sender >> 1) + 1) & 7,
        receive=((receiver >> 1) + 1) & 7,
        last_sent_rr=bool(sender & 1),
        last_sent_receive=(sender >> 5) & 7,
        last_received_receive=(receiver >> 5) & 7,
    )


def _sequence_to_gurux(settings: Any, sequence: HdlcSequence) -> None:
    """Put our last control fields where gurux computes its next frame from."""
    settings.senderFrame = (
        sequence.last_sent_receive << 5
        | 0x10
        | ((sequence.send - 1) & 7) << 1
        | int(sequence.last_sent_rr)
    )
    settings.receiverFrame = (
        sequence.last_received_receive << 5 | 0x10 | ((sequence.receive - 1) & 7) << 1
    )


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisterFailure:
    """A register that could not be read, and why."""

    obis: str
    error: DlmsError


@dataclass(frozen=True)
class ProfileFailure:
    """A profile range that could not be read, and why."""

    obis: str
    error: DlmsError


@dataclass(frozen=True)
class MeterRead:
    """The outcome of one read: readings, and what failed (the Modbus reader's shape)."""

    readings: list[Reading]
    failures: list[RegisterFailure | ProfileFailure]

    @property
    def complete(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class MeterEvent:
    """One entry of the meter's event log."""

    meter: str
    at: dt.datetime
    code: int

    @property
    def name(self) -> str:
        return _EVENT_NAMES.get(self.code, f"event {self.code}")


@dataclass(frozen=True)
class _Scaling:
    scaler: int
    unit: str


def _scaled(raw: float, scaler: int) -> float:
    # Divide by a power of ten: 2310 with scaler -1 reads 231.0, not 231.00000000000003.
    return raw / 10 ** (-scaler) if scaler < 0 else float(raw * 10**scaler)


class DlmsMeterReader:
    """Reads one DLMS meter through sessions; keeps its scalers and capture objects.

    Args:
        name: the meter's serial (Reading.meter).
        profile: its device profile (units per OBIS; generic-dlms by default).
    """

    def __init__(self, name: str, profile: DeviceProfile | None = None) -> None:
        self.name = name
        self.profile = profile or load_profile("generic-dlms")
        self._units = {q.obis: q.unit for q in self.profile.quantities}
        self._scalings: dict[str, _Scaling] = {}
        self._capture_objects: dict[str, list[tuple[int, str, int]]] = {}

    # -- clock ----------------------------------------------------------------

    def read_clock(self, session: DlmsSession) -> dt.datetime:
        """The meter's clock (0-0:1.0.0.255) as an aware datetime.

        Raises:
            DataAccessError: refused, or not a valid date-time.
        """
        value = session.get(GXDLMSClock(_dotted(CLOCK)), 2)
        try:
            decoded = axdr.decode_date_time(bytes(value))
        except (CodecError, TypeError) as exc:
            raise DataAccessError(self.name, f"clock: not a date-time: {exc}") from exc
        when = decoded if isinstance(decoded, dt.datetime) else decoded.to_datetime()
        if when is None:
            raise DataAccessError(self.name, "clock: the meter sent a date-time with wildcards")
        return when

    def set_clock(self, session: DlmsSession, when: dt.datetime) -> None:
        """Set the meter's clock (0-0:1.0.0.255 attribute 2) to `when` (aware).

        The value is our own COSEM date-time encoding (fastcodec), handed to
        gurux's SET as an octet-string, so gurux's local-time conversions stay out.

        Raises:
            DataAccessError: the meter refused (read-write-denied for a public client, …).
            DlmsTimeout: no answer.
        """
        if when.utcoffset() is None:
            raise ValueError("set_clock needs an aware datetime")
        clock = GXDLMSClock(_dotted(CLOCK))
        clock.time = apdu.cosem_date_time(when)
        session.set(clock, 2)

    # -- registers ------------------------------------------------------------

    def _scaling(self, session: DlmsSession, obis: str) -> _Scaling:
        scaling = self._scalings.get(obis)
        if scaling is None:
            scaler_unit = session.get(GXDLMSRegister(_dotted(obis)), 3)
            try:
                scaler, unit = int(scaler_unit[0]), int(scaler_unit[1])
            except (TypeError, IndexError, ValueError) as exc:
                raise DataAccessError(
                    self.name, f"{obis}: bad scaler_unit {scaler_unit!r}"
                ) from exc
            scaling = _Scaling(scaler, _UNIT_TEXT.get(unit, f"unit {unit}"))
            self._scalings[obis] = scaling
        return scaling

    def _presented(self, obis: str, raw: float, scaling: _Scaling) -> tuple[float, str]:
        value = _scaled(raw, scaling.scaler)
        wanted = self._units.get(_short(obis), scaling.unit)
        if wanted == scaling.unit:
            return value, wanted
        factor = _CONVERSIONS.get((scaling.unit, wanted))
        if factor is None:
            return value, scaling.unit
        # Dividing by 1000 keeps 1234 Wh at 1.234 kWh exactly as a reader expects.
        return (value / 1000 if factor == 1e-3 else value * factor), wanted

    def read_registers(self, session: DlmsSession, obis_codes: Iterable[str]) -> MeterRead:
        """Read registers (class 3) with their units; failures are reported, not raised.

        Timestamps are the meter's clock when it can be read, else the agent's
        (AGENT_TIMESTAMP).
        """
        readings: list[Reading] = []
        failures: list[RegisterFailure | ProfileFailure] = []
        quality = 0
        try:
            at_ms = int(self.read_clock(session).timestamp() * 1000)
        except DataAccessError:
            at_ms = time.time_ns() // 1_000_000
            quality = int(QualityFlag.AGENT_TIMESTAMP)
        for obis in obis_codes:
            try:
                scaling = self._scaling(session, obis)
                raw = session.get(GXDLMSRegister(_dotted(obis)), 2)
                if not isinstance(raw, int | float):
                    raise DataAccessError(self.name, f"{obis}: not a number: {raw!r}")
                value, unit = self._presented(obis, raw, scaling)
            except DlmsTimeout as exc:
                failures.append(RegisterFailure(_short(obis), exc))
                break  # a silent meter costs one timeout, not one per register
            except DlmsError as exc:
                failures.append(RegisterFailure(_short(obis), exc))
                continue
            readings.append(Reading(self.name, _short(obis), at_ms, value, unit, quality))
        return MeterRead(readings, failures)

    def read_all_registers(self, session: DlmsSession) -> MeterRead:
        """Every quantity of the device profile."""
        return self.read_registers(session, [q.obis for q in self.profile.quantities])

    # -- profiles -------------------------------------------------------------

    def _columns(self, session: DlmsSession, obis: str) -> list[tuple[int, str, int]]:
        columns = self._capture_objects.get(obis)
        if columns is None:
            value = session.get(GXDLMSProfileGeneric(_dotted(obis)), 3)
            try:
                columns = [
                    (int(entry[0]), obis_text(bytes(entry[1])), int(entry[2])) for entry in value
                ]
            except (TypeError, ValueError, IndexError) as exc:
                raise DataAccessError(self.name, f"{obis}: bad capture objects: {exc}") from exc
            self._capture_objects[obis] = columns
        return columns

    def _buffer_by_range(
        self, session: DlmsSession, obis: str, start: dt.datetime, end: dt.datetime
    ) -> tuple[list[tuple[int, str, int]], axdr.CaptureColumns]:
        columns = self._columns(session, obis)
        raw = session.get_by_range(_CLASS_PROFILE_GENERIC, obis, 2, start, end)
        try:
            buffer = axdr.decode_capture_buffer(raw)
        except CodecError as exc:
            raise DataAccessError(self.name, f"{obis}: unreadable buffer: {exc}") from exc
        if buffer.row_count and len(buffer.columns) != len(columns):
            raise DataAccessError(
                self.name,
                f"{obis}: rows of {len(buffer.columns)} cells, {len(columns)} capture objects",
            )
        return columns, buffer

    def read_load_profile(
        self, session: DlmsSession, start: dt.datetime, end: dt.datetime
    ) -> MeterRead:
        """The load profile rows captured in [start, end], stamped by the meter.

        Each register column becomes readings in the profile's units; the status
        column and the clock's status set CLOCK_INVALID, INCOMPLETE_PERIOD, ….
        """
        try:
            columns, buffer = self._buffer_by_range(session, LOAD_PROFILE, start, end)
            clock_index = next(
                (i for i, (cls, ln, _) in enumerate(columns) if cls == _CLASS_CLOCK), None
            )
            if clock_index is None:
                raise DataAccessError(self.name, f"{LOAD_PROFILE}: no clock column")
            status_index = next(
                (i for i, (cls, ln, _) in enumerate(columns) if cls == _CLASS_DATA), None
            )
            scalings = {
                i: self._scaling(session, ln)
                for i, (cls, ln, attribute) in enumerate(columns)
                if cls == _CLASS_REGISTER and attribute == 2
            }
        except DlmsError as exc:
            return MeterRead([], [ProfileFailure(_short(LOAD_PROFILE), exc)])
        readings: list[Reading] = []
        stamps = buffer.columns[clock_index] if buffer.row_count else []
        for row, stamp in enumerate(stamps):
            if not isinstance(stamp, dt.datetime):
                continue  # a compressed (null) or wildcard stamp: no time to give
            quality = 0
            if getattr(stamp, "clock_status", 0) & _CLOCK_STATUS_INVALID and (
                getattr(stamp, "clock_status", 0) != 0xFF
            ):
                quality |= QualityFlag.CLOCK_INVALID
            if status_index is not None:
                status = buffer.columns[status_index][row]
                if isinstance(status, int):
                    for bit, flag in _STATUS_FLAGS:
                        if status & bit:
                            quality |= flag
            at_ms = int(stamp.timestamp() * 1000)
            for index, scaling in scalings.items():
                raw = buffer.columns[index][row]
                if not isinstance(raw, int | float):
                    continue
                obis = columns[index][1]
                value, unit = self._presented(obis, raw, scaling)
                readings.append(Reading(self.name, _short(obis), at_ms, value, unit, int(quality)))
        return MeterRead(readings, [])

    def catch_up(
        self, session: DlmsSession, last_at: dt.datetime, until: dt.datetime | None = None
    ) -> MeterRead:
        """The load profile after `last_at` (the last row already taken) up to `until`
        (default: the meter's clock): a gateway back from an outage reads what it missed."""
        end = until or self.read_clock(session)
        return self.read_load_profile(session, last_at + dt.timedelta(seconds=1), end)

    def read_events(
        self, session: DlmsSession, start: dt.datetime, end: dt.datetime
    ) -> list[MeterEvent]:
        """The event log entries (power down/up, tamper) logged in [start, end].

        Raises:
            DlmsError: the log cannot be read.
        """
        columns, buffer = self._buffer_by_range(session, EVENT_LOG, start, end)
        if not buffer.row_count:
            return []
        clock_index = next(i for i, (cls, _, _) in enumerate(columns) if cls == _CLASS_CLOCK)
        code_index = next((i for i in range(len(columns)) if i != clock_index), None)
        events = []
        for row, stamp in enumerate(buffer.columns[clock_index]):
            code = buffer.columns[code_index][row] if code_index is not None else None
            if isinstance(stamp, dt.datetime) and isinstance(code, int):
                events.append(MeterEvent(self.name, stamp, code))
        return events


def session_for(
    pipe: BytePipe,
    *,
    interface: Literal["hdlc", "wrapper"],
    client_address: int = 1,
    server_address: int = 1,
    physical_address: int | None = None,
    password: str | None = None,
    timeout_s: float = 3.0,
    name: str = "meter",
    fast_profile: bool = True,
    max_receive_pdu_size: int | None = None,
) -> DlmsSession:
    """A session with LLS when a password is given, none otherwise."""
    security: SecurityStrategy = LowSecurity(password) if password is not None else NoSecurity()
    return DlmsSession(
        pipe,
        interface=interface,
        client_address=client_address,
        server_address=server_address,
        physical_address=physical_address,
        security=security,
        timeout_s=timeout_s,
        name=name,
        fast_profile=fast_profile,
        max_receive_pdu_size=max_receive_pdu_size,
    )


def register_codes(obis_codes: Sequence[str]) -> list[str]:
    """Check OBIS codes given by a user (`1-0:1.8.0`); raise ValueError naming a bad one."""
    for obis in obis_codes:
        _dotted(obis)
    return [_short(obis) for obis in obis_codes]
