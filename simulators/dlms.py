"""A simulated DLMS/COSEM meter: the sans-I/O server side of the application layer.

What it implements (DLMS UA Green Book Ed. 10 / IEC 62056-5-3, Blue Book /
IEC 62056-6-2, logical-name referencing only):

- the association (ACSE, Green Book §9.4.2 / ISO/IEC 8650-1): an AARQ with
  the LN context, no security (mechanism lowest) or low-level security (LLS,
  the meter's password); an AARE accepting with an InitiateResponse
  (negotiated conformance = the client's proposal ∩ {get, selective-access,
  block-transfer-with-get, multiple-references}, server max receive PDU size,
  vaa-name 0x0007) or rejecting (rejected-permanent, diagnostic
  authentication-failure 13 for a wrong password); RLRQ → RLRE;
- the xDLMS GET service (Green Book §9.3.4–§9.3.5): normal, with-list and
  next; answers longer than the client's max receive PDU size go out as
  GET-Response-With-Datablock, one block per GET-Request-Next;
- the object model (Blue Book §4.3–§4.5): see `DlmsMeter` below.

Strategy: `CosemSession` is one association's state (h11 style, no I/O):
`receive_apdu(bytes)` → the answer APDU bytes, or None when the request asks
for no answer. It never raises: a malformed APDU gets an ExceptionResponse.
The links (simulators/dlms_links.py: HDLC over serial, the IEC 62056-47 TCP
wrapper, the optical port's mode E) own one session per connection and drop
it on disconnect or inactivity.

State × request table (what a session answers):

- idle, AARQ: AARE accepted or rejected (see `_associate`);
- idle, GET (normal, next, with-list): ExceptionResponse (state-error
  service-not-allowed, service-error operation-not-possible);
- idle or associated, RLRQ: RLRE normal; the session is idle after it;
- associated, AARQ: AARE rejected-permanent, no-reason-given (the
  association in place stays);
- associated, GET: GET-Response normal, with-list or with-datablock; a
  GET-Request-Next without a transfer under way gets no-long-get-in-progress,
  one with another block number data-block-number-invalid (the transfer ends);
- any state, another or a malformed APDU: ExceptionResponse (service-unknown,
  service-not-supported; pdu-too-long for one over our max receive PDU size).

Access rights: the public client (client address 16, no authentication)
reads the logical device name, the serial number and the clock; everything
else answers read-write-denied (3). The management client (client address 1)
must authenticate with LLS and reads everything.

Presented values (what real meters of this class do, e.g. Landis+Gyr E350,
Iskra AM550 with their default scalers):

| OBIS                          | A-XDR type            | scaler | unit  |
|-------------------------------|-----------------------|--------|-------|
| 1.8.0 2.8.0 1.8.x 2.8.x 15.8.0 | double-long-unsigned | 0      | Wh    |
| 3.8.0 4.8.0                   | double-long-unsigned  | 0      | varh  |
| 1.7.0 2.7.0 9.7.0             | double-long-unsigned  | 0      | W, VA |
| 16.7.0 36.7.0 56.7.0 76.7.0   | double-long           | 0      | W     |
| 32.7.0 52.7.0 72.7.0          | long-unsigned         | -1     | V     |
| 31.7.0 51.7.0 71.7.0          | long-unsigned         | -2     | A     |
| 14.7.0                        | long-unsigned         | -2     | Hz    |

`presented_values(at_s)` gives them in the device profile's units (kWh, W,
V, A, Hz): energy = raw Wh / 1000, the others raw × 10^scaler.

Load profile 1-0:99.1.0.255 (class 7): columns clock (0-0:1.0.0.255 attr 2),
AMR profile status (unsigned), 1-0:1.8.0 attr 2 and 1-0:2.8.0 attr 2 (raw
Wh); one row per quarter hour (capture period 900 s) from the install moment
(at most `PROFILE_DAYS` back) up to now, stamped with the nominal quarter
hour in UTC. Rows at moments the meter was powered down are missing; the
first row after a power-up has the power-down bit 0x80 in its status. The
energy registers keep the physics' values across an outage (simplification).

Profile answer variants (`faults.profile_answer`, `_profile_answer_variant`):
a GET of a profile buffer (class 7 attribute 2, its datablocks included) is
answered with the priority bit cleared ("normal-priority"), as a
ConfirmedServiceError ("service-error") or as a GET-Response of an unknown
choice ("garbled"): what the reader's fallback to gurux is tested with.

Standard event log 0-0:99.98.0.255 (class 7): rows (clock, event code
unsigned): 1 power down, 2 power up, 40 terminal cover opened (`tamper()`).

The meter's clock is its own: it runs `faults.clock_drift_s_per_day` fast
(or slow) since the install moment, and the clock object shows that time.
The management client may set it (xDLMS SET-Request-Normal on the clock's
attribute 2, Green Book §9.3.6; `CosemSession._set`): the meter then keeps
the difference as `clock_offset_s`; a public client's SET is answered
read-write-denied. Any other SET is not supported (an ExceptionResponse, as
for every other unknown service).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field

from edge_agent.profiles import DeviceProfile, load_profile
from fastcodec import apdu, axdr
from fastcodec.apdu import (
    Aare,
    Aarq,
    AcseServiceUserDiagnostic,
    AssociationResult,
    AuthenticationMechanism,
    ConfirmedService,
    ConfirmedServiceError,
    Conformance,
    DataAccessResult,
    ExceptionResponse,
    ExceptionServiceError,
    ExceptionStateError,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
    InitiateRequest,
    InitiateResponse,
    Rlre,
    Rlrq,
    ServiceErrorType,
)
from fastcodec.axdr import Tag, Typed
from fastcodec.exceptions import CodecError
from simulators.clock import SimClock
from simulators.faults import MeterFaults
from simulators.physics import MeterPhysics

log = logging.getLogger(__name__)

__all__ = [
    "EVENT_POWER_DOWN",
    "EVENT_POWER_UP",
    "EVENT_TERMINAL_COVER_OPENED",
    "MANAGEMENT_CLIENT",
    "PUBLIC_CLIENT",
    "REGISTERS",
    "SUPPORTED_CONFORMANCE",
    "CosemSession",
    "DlmsMeter",
    "ProfileRow",
    "RegisterDefinition",
]

PUBLIC_CLIENT = 16
MANAGEMENT_CLIENT = 1
SUPPORTED_CONFORMANCE = (
    Conformance.GET
    | Conformance.SELECTIVE_ACCESS
    | Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
    | Conformance.MULTIPLE_REFERENCES
)
CAPTURE_PERIOD_S = 900
PROFILE_DAYS = 40
STATUS_POWER_DOWN = 0x80
EVENT_POWER_DOWN = 1
EVENT_POWER_UP = 2
EVENT_TERMINAL_COVER_OPENED = 40
EVENT_LOG_ENTRIES = 100

# Unit enumeration (Blue Book §4.3.2, table of units).
UNIT_WH, UNIT_VARH, UNIT_W, UNIT_VA, UNIT_V, UNIT_A, UNIT_HZ = 30, 32, 27, 28, 35, 33, 44

LN_LOGICAL_DEVICE_NAME = bytes((0, 0, 42, 0, 0, 255))
LN_SERIAL_NUMBER = bytes((0, 0, 96, 1, 0, 255))
LN_CLOCK = bytes((0, 0, 1, 0, 0, 255))
LN_LOAD_PROFILE = bytes((1, 0, 99, 1, 0, 255))
LN_EVENT_LOG = bytes((0, 0, 99, 98, 0, 255))
LN_AMR_STATUS = bytes((0, 0, 96, 10, 1, 255))
LN_EVENT_CODE = bytes((0, 0, 96, 11, 0, 255))

CLASS_DATA, CLASS_REGISTER, CLASS_PROFILE, CLASS_CLOCK = 1, 3, 7, 8
_PUBLIC_OBJECTS = {LN_LOGICAL_DEVICE_NAME, LN_SERIAL_NUMBER, LN_CLOCK}
# GET-Response-With-Datablock header: tag, choice, invoke id, last-block,
# block number (4), raw-data choice, raw-data length (3 at most).
_DATABLOCK_OVERHEAD = 12
_SET_REQUEST_NORMAL = b"\xc1\x01"  # set-request tag, normal choice
_MIN_PDU_SIZE = 32


def _logical_name(obis: str) -> bytes:
    medium, rest = obis.split("-", 1)
    channel, rest = rest.split(":", 1)
    c, d, e = rest.split(".")
    return bytes((int(medium), int(channel), int(c), int(d), int(e), 255))


@dataclass(frozen=True)
class RegisterDefinition:
    """How a register (class 3) presents one physics quantity."""

    obis: str  # A-B:C.D.E, as the profiles write it
    tag: Tag
    scaler: int
    unit: int
    per_profile_unit: float = 1.0  # raw units (after scaler) per profile unit: 1000 Wh/kWh

    @property
    def logical_name(self) -> bytes:
        return _logical_name(self.obis)

    def raw(self, value: float) -> int:
        """The integer the meter holds for `value` (profile units), saturated."""
        raw = round(value * self.per_profile_unit / 10.0**self.scaler)
        low, high = _INT_RANGES[self.tag]
        return min(high, max(low, raw))

    def presented(self, raw: int) -> float:
        """What a reader makes of `raw`, in profile units."""
        # Divide by a power of ten rather than multiply by its inverse: 2310
        # with scaler -1 reads 231.0, not 231.00000000000003.
        scaled = raw / 10 ** (-self.scaler) if self.scaler < 0 else float(raw * 10**self.scaler)
        return scaled / self.per_profile_unit


_INT_RANGES = {
    Tag.DOUBLE_LONG_UNSIGNED: (0, 2**32 - 1),
    Tag.DOUBLE_LONG: (-(2**31), 2**31 - 1),
    Tag.LONG_UNSIGNED: (0, 2**16 - 1),
}

_DLU, _DL, _LU = Tag.DOUBLE_LONG_UNSIGNED, Tag.DOUBLE_LONG, Tag.LONG_UNSIGNED
REGISTERS: tuple[RegisterDefinition, ...] = (
    *(
        RegisterDefinition(f"1-0:{code}", _DLU, 0, UNIT_WH, 1000.0)
        for code in ("1.8.0", "2.8.0", "1.8.1", "1.8.2", "2.8.1", "2.8.2", "15.8.0")
    ),
    RegisterDefinition("1-0:3.8.0", _DLU, 0, UNIT_VARH, 1000.0),
    RegisterDefinition("1-0:4.8.0", _DLU, 0, UNIT_VARH, 1000.0),
    RegisterDefinition("1-0:1.7.0", _DLU, 0, UNIT_W),
    RegisterDefinition("1-0:2.7.0", _DLU, 0, UNIT_W),
    RegisterDefinition("1-0:9.7.0", _DLU, 0, UNIT_VA),
    RegisterDefinition("1-0:16.7.0", _DL, 0, UNIT_W),
    *(RegisterDefinition(f"1-0:{c}.7.0", _DL, 0, UNIT_W) for c in (36, 56, 76)),
    *(RegisterDefinition(f"1-0:{c}.7.0", _LU, -1, UNIT_V) for c in (32, 52, 72)),
    *(RegisterDefinition(f"1-0:{c}.7.0", _LU, -2, UNIT_A) for c in (31, 51, 71)),
    RegisterDefinition("1-0:14.7.0", _LU, -2, UNIT_HZ),
)
_REGISTERS_BY_LN = {register.logical_name: register for register in REGISTERS}
_THREE_PHASE_ONLY = {f"1-0:{code}.7.0" for code in (52, 72, 51, 71, 56, 76)}
_IMPORT = _REGISTERS_BY_LN[bytes((1, 0, 1, 8, 0, 255))]
_EXPORT = _REGISTERS_BY_LN[bytes((1, 0, 2, 8, 0, 255))]


def _capture_object(class_id: int, name: bytes, attribute: int) -> tuple[object, ...]:
    return (Typed(Tag.LONG_UNSIGNED, class_id), name, Typed(Tag.INTEGER, attribute), _u16(0))


def _u16(value: int) -> Typed:
    return Typed(Tag.LONG_UNSIGNED, value)


def _u32(value: int) -> Typed:
    return Typed(Tag.DOUBLE_LONG_UNSIGNED, value)


def _date_time(at_s: float) -> bytes:
    """The 12-octet COSEM date-time of `at_s` in UTC (deviation 0, status 0)."""
    return apdu.cosem_date_time(dt.datetime.fromtimestamp(at_s, dt.UTC))


_LOAD_PROFILE_COLUMNS = (
    _capture_object(CLASS_CLOCK, LN_CLOCK, 2),
    _capture_object(CLASS_DATA, LN_AMR_STATUS, 2),
    _capture_object(CLASS_REGISTER, _IMPORT.logical_name, 2),
    _capture_object(CLASS_REGISTER, _EXPORT.logical_name, 2),
)
_EVENT_LOG_COLUMNS = (
    _capture_object(CLASS_CLOCK, LN_CLOCK, 2),
    _capture_object(CLASS_DATA, LN_EVENT_CODE, 2),
)


@dataclass(frozen=True)
class ProfileRow:
    """One load profile row as the meter holds it (energies in raw Wh)."""

    at_s: float
    status: int
    import_wh: int
    export_wh: int


class _AccessError(Exception):
    def __init__(self, result: DataAccessResult) -> None:
        super().__init__(result.name)
        self.result = result


@dataclass
class DlmsMeter:
    """One simulated DLMS/COSEM meter (its objects, clock, profiles and events).

    Args:
        serial: the serial number (0-0:96.1.0.255, and the logical device
            name "VSM" + serial).
        physics: where the values come from.
        clock: simulated time.
        password: the LLS secret of the management client (client address 1).
        physical_address: the lower HDLC address (the upper, logical one is 1).
        installed_s: when the meter was installed: its clock was right then,
            its load profile starts then. Default: the physics' epoch.
        profile: the device profile (generic-dlms by default).
        manufacturer: the three-letter FLAG id (optical identification).
    """

    serial: str
    physics: MeterPhysics
    clock: SimClock
    password: str = "00000000"
    physical_address: int = 17
    logical_address: int = 1
    installed_s: float | None = None
    faults: MeterFaults = field(default_factory=MeterFaults)
    profile: DeviceProfile = field(default_factory=lambda: load_profile("generic-dlms"))
    manufacturer: str = "VSM"
    events: list[tuple[float, int]] = field(default_factory=list)
    outages: list[list[float | None]] = field(default_factory=list)
    requests: int = 0
    clock_offset_s: float = 0.0  # what a clock SET moved the clock by (and tests set)

    def __post_init__(self) -> None:
        if self.installed_s is None:
            self.installed_s = self.physics.epoch_s

    @property
    def unit_id(self) -> int:
        """The physical HDLC address (what the fleet manifest calls the unit)."""
        return self.physical_address

    @property
    def logical_device_name(self) -> bytes:
        return (self.manufacturer + self.serial).encode("ascii")

    # -- time, power and events ----------------------------------------------

    def meter_time(self, at_s: float) -> float:
        """The meter's own clock at simulated time `at_s` (drift since install)."""
        assert self.installed_s is not None
        elapsed = max(0.0, at_s - self.installed_s)
        drift_s = self.faults.clock_drift_s_per_day * elapsed / 86_400
        return at_s + drift_s + self.clock_offset_s

    def set_clock(self, meter_s: float, at_s: float | None = None) -> None:
        """The clock object's attribute 2 written: from now on it shows `meter_s` at `at_s`."""
        now = self.clock.now() if at_s is None else at_s
        self.clock_offset_s += meter_s - self.meter_time(now)

    @property
    def is_down(self) -> bool:
        return bool(self.outages) and self.outages[-1][1] is None

    def power_down(self, at_s: float) -> None:
        """The supply goes: last gasp writes a power-down event."""
        if not self.is_down:
            self.outages.append([at_s, None])
            self._event(at_s, EVENT_POWER_DOWN)

    def power_up(self, at_s: float) -> None:
        """The supply returns: a power-up event; the next profile row is flagged."""
        if self.is_down:
            self.outages[-1][1] = at_s
            self._event(at_s, EVENT_POWER_UP)

    def tamper(self, at_s: float | None = None) -> None:
        """The terminal cover was opened."""
        self._event(self.clock.now() if at_s is None else at_s, EVENT_TERMINAL_COVER_OPENED)

    def observe_faults(self, at_s: float | None = None) -> bool:
        """Follow `faults.powered_down` (switched from outside); True when it changed."""
        now = self.clock.now() if at_s is None else at_s
        if self.faults.powered_down and not self.is_down:
            self.power_down(now)
            return True
        if not self.faults.powered_down and self.is_down:
            self.power_up(now)
            return True
        return False

    def _event(self, at_s: float, code: int) -> None:
        self.events.append((at_s, code))
        del self.events[:-EVENT_LOG_ENTRIES]

    def _down_at(self, at_s: float) -> bool:
        return any(
            start <= at_s and (end is None or at_s < end)
            for start, end in self.outages
            if start is not None
        )

    def _outage_within(self, start_s: float, end_s: float) -> bool:
        return any(
            down is not None and down <= end_s and (up is None or up > start_s)
            for down, up in self.outages
        )

    # -- ground truth ---------------------------------------------------------

    def presented_values(self, at_s: float) -> dict[str, float]:
        """Ground truth: each register as a reader scales it (profile units) at `at_s`."""
        state = self.physics.state(at_s).values
        return {
            register.obis: register.presented(register.raw(state[register.obis]))
            for register in REGISTERS
            if register.obis in state
            and not (self.physics.phases == 1 and register.obis in _THREE_PHASE_ONLY)
        }

    def profile_rows(self, from_s: float, to_s: float) -> list[ProfileRow]:
        """The load profile rows captured at from_s <= t <= to_s (and not after now)."""
        assert self.installed_s is not None
        now = self.clock.now()
        oldest = max(self.installed_s, now - PROFILE_DAYS * 86_400)
        first = max(from_s, oldest)
        first = math.ceil(first / CAPTURE_PERIOD_S) * CAPTURE_PERIOD_S
        last = min(to_s, now)
        rows = []
        at = first
        while at <= last:
            if not self._down_at(at):
                status = STATUS_POWER_DOWN if self._outage_within(at - CAPTURE_PERIOD_S, at) else 0
                energy = self.physics.state(at).values
                rows.append(
                    ProfileRow(
                        at,
                        status,
                        _IMPORT.raw(energy["1-0:1.8.0"]),
                        _EXPORT.raw(energy["1-0:2.8.0"]),
                    )
                )
            at += CAPTURE_PERIOD_S
        return rows

    # -- the object model -----------------------------------------------------

    def get_attribute(
        self,
        class_id: int,
        logical_name: bytes,
        attribute: int,
        selection: apdu.AccessSelection | None = None,
        *,
        client_address: int = MANAGEMENT_CLIENT,
    ) -> bytes | DataAccessResult:
        """The A-XDR encoding of one attribute, or why it cannot be read."""
        try:
            return axdr.encode(
                self._attribute(class_id, logical_name, attribute, selection, client_address)
            )
        except _AccessError as exc:
            return exc.result

    def _attribute(
        self,
        class_id: int,
        name: bytes,
        attribute: int,
        selection: apdu.AccessSelection | None,
        client_address: int,
    ) -> object:
        known = self._class_of(name)
        if known is None:
            raise _AccessError(DataAccessResult.OBJECT_UNDEFINED)
        if known != class_id:
            raise _AccessError(DataAccessResult.OBJECT_CLASS_INCONSISTENT)
        if client_address != MANAGEMENT_CLIENT and name not in _PUBLIC_OBJECTS:
            raise _AccessError(DataAccessResult.READ_WRITE_DENIED)
        if selection is not None and not (class_id == CLASS_PROFILE and attribute == 2):
            raise _AccessError(DataAccessResult.OTHER_REASON)
        if attribute == 1:
            return name
        now = self.clock.now()
        if class_id == CLASS_DATA:
            return self._data_value(name, attribute)
        if class_id == CLASS_REGISTER:
            return self._register_attribute(_REGISTERS_BY_LN[name], attribute, now)
        if class_id == CLASS_CLOCK:
            return self._clock_attribute(attribute, now)
        return self._profile_attribute(name, attribute, selection, now)

    def _class_of(self, name: bytes) -> int | None:
        if name in (LN_LOGICAL_DEVICE_NAME, LN_SERIAL_NUMBER, LN_AMR_STATUS, LN_EVENT_CODE):
            return CLASS_DATA
        if name == LN_CLOCK:
            return CLASS_CLOCK
        if name in (LN_LOAD_PROFILE, LN_EVENT_LOG):
            return CLASS_PROFILE
        register = _REGISTERS_BY_LN.get(name)
        if register is None:
            return None
        if self.physics.phases == 1 and register.obis in _THREE_PHASE_ONLY:
            return None
        return CLASS_REGISTER

    def _data_value(self, name: bytes, attribute: int) -> object:
        if attribute != 2:
            raise _AccessError(DataAccessResult.OBJECT_UNDEFINED)
        if name == LN_LOGICAL_DEVICE_NAME:
            return self.logical_device_name
        if name == LN_SERIAL_NUMBER:
            return Typed(Tag.VISIBLE_STRING, self.serial)
        if name == LN_AMR_STATUS:
            return Typed(Tag.UNSIGNED, 0)
        last_code = self.events[-1][1] if self.events else 0
        return Typed(Tag.UNSIGNED, last_code)

    def _register_attribute(
        self, register: RegisterDefinition, attribute: int, now: float
    ) -> object:
        if attribute == 2:
            value = self.physics.state(now).values[register.obis]
            return Typed(register.tag, register.raw(value))
        if attribute == 3:
            return (Typed(Tag.INTEGER, register.scaler), Typed(Tag.ENUM, register.unit))
        raise _AccessError(DataAccessResult.OBJECT_UNDEFINED)

    def _clock_attribute(self, attribute: int, now: float) -> object:
        unspecified = bytes.fromhex("ffffffffffffffffff800000")
        values: dict[int, object] = {
            2: _date_time(self.meter_time(now)),
            3: Typed(Tag.LONG, 0),  # time_zone: minutes from UTC (the meter runs on UTC)
            4: Typed(Tag.UNSIGNED, 0),  # status: valid, no daylight saving
            5: unspecified,
            6: unspecified,
            7: Typed(Tag.INTEGER, 0),
            8: False,
            9: Typed(Tag.ENUM, 1),  # clock_base: internal crystal
        }
        if attribute not in values:
            raise _AccessError(DataAccessResult.OBJECT_UNDEFINED)
        return values[attribute]

    def _profile_attribute(
        self, name: bytes, attribute: int, selection: apdu.AccessSelection | None, now: float
    ) -> object:
        columns = _LOAD_PROFILE_COLUMNS if name == LN_LOAD_PROFILE else _EVENT_LOG_COLUMNS
        if attribute == 2:
            rows = self._profile_buffer(name, now)
            return _select_rows(rows, columns, selection)
        if attribute == 3:
            return list(columns)
        if attribute == 4:
            return _u32(CAPTURE_PERIOD_S if name == LN_LOAD_PROFILE else 0)
        if attribute == 5:
            return Typed(Tag.ENUM, 1)  # sort method: FIFO
        if attribute == 6:
            return _capture_object(0, bytes(6), 0)
        if attribute == 7:
            return _u32(len(self._profile_buffer(name, now)))
        if attribute == 8:
            entries = PROFILE_DAYS * 86_400 // CAPTURE_PERIOD_S
            return _u32(entries if name == LN_LOAD_PROFILE else EVENT_LOG_ENTRIES)
        raise _AccessError(DataAccessResult.OBJECT_UNDEFINED)

    def _profile_buffer(self, name: bytes, now: float) -> list[tuple[float, tuple[object, ...]]]:
        if name == LN_EVENT_LOG:
            return [
                (at, (_date_time(at), Typed(Tag.UNSIGNED, code)))
                for at, code in self.events
                if at <= now
            ]
        return [
            (
                row.at_s,
                (
                    _date_time(row.at_s),
                    Typed(Tag.UNSIGNED, row.status),
                    _u32(row.import_wh),
                    _u32(row.export_wh),
                ),
            )
            for row in self.profile_rows(-math.inf, now)
        ]


def _profile_answer_variant(answer: bytes, variant: str) -> bytes:
    """A GET-Response (C4, choice, invoke-id-and-priority, …) as `faults.profile_answer` says.

    "normal-priority": the priority bit (bit 7, Green Book §9.5) cleared, as a
    meter without priority management answers; "service-error": a refusal as a
    ConfirmedServiceError (Green Book §9.5: service read, ServiceError access,
    scope-of-access-violated) rather than a data-access-result, as some meters
    refuse; "garbled": a GET-Response choice that does not exist (1 normal,
    2 with-datablock, 3 with-list).
    """
    if variant == "normal-priority":
        return answer[:2] + bytes((answer[2] & 0x7F,)) + answer[3:]
    if variant == "service-error":
        return apdu.encode_apdu(
            ConfirmedServiceError(ConfirmedService.READ, ServiceErrorType.ACCESS, 1)
        )
    if variant == "garbled":
        return answer[:1] + b"\x09" + answer[2:]
    return answer


def _is_clock_time(set_request: bytes) -> bool:
    """A SET-Request-Normal for the clock's attribute 2 (time)?"""
    descriptor = (int.from_bytes(set_request[3:5], "big"), set_request[5:11], set_request[11])
    return descriptor == (CLASS_CLOCK, LN_CLOCK, 2)


def _select_rows(
    rows: list[tuple[float, tuple[object, ...]]],
    columns: tuple[tuple[object, ...], ...],
    selection: apdu.AccessSelection | None,
) -> list[tuple[object, ...]]:
    """Apply a range_descriptor (1) or entry_descriptor (2) to a profile buffer."""
    if selection is None:
        return [row for _, row in rows]
    try:
        if selection.selector == 1:
            return _select_by_range(rows, columns, selection.parameters)
        if selection.selector == 2:
            return _select_by_entry(rows, selection.parameters)
    except (CodecError, ValueError, TypeError, IndexError) as exc:
        log.debug("bad selective access: %s", exc)
        raise _AccessError(DataAccessResult.TYPE_UNMATCHED) from None
    raise _AccessError(DataAccessResult.OTHER_REASON)


def _range_moment(value: bytes) -> float:
    """A range bound (octet-string or date-time) as epoch seconds.

    Unspecified fields (0xFF) read as their lowest value and an unspecified
    deviation as UTC, the way meters read a client's loosely filled bounds.
    """
    decoded = axdr.decode(value)
    octets = decoded if isinstance(decoded, bytes) else value[1:]
    if len(octets) != 12:
        raise ValueError("range bound is not a 12-octet date-time")
    year = int.from_bytes(octets[0:2], "big")
    month, day, _, hour, minute, second = octets[2:8]
    deviation = int.from_bytes(octets[9:11], "big", signed=True)

    def field(v: int, low: int) -> int:
        return low if v == 0xFF else v

    moment = dt.datetime(
        year,
        field(month, 1),
        field(day, 1),
        field(hour, 0),
        field(minute, 0),
        field(second, 0),
        tzinfo=dt.UTC,
    )
    if deviation != -0x8000:
        moment += dt.timedelta(minutes=deviation)  # deviation = UTC - local
    return moment.timestamp()


def _select_by_range(
    rows: list[tuple[float, tuple[object, ...]]],
    columns: tuple[tuple[object, ...], ...],
    parameters: bytes,
) -> list[tuple[object, ...]]:
    descriptor = apdu.parse_range_descriptor(parameters)
    restricting = descriptor.restricting_object
    if (restricting.class_id, restricting.logical_name) != (CLASS_CLOCK, LN_CLOCK):
        raise _AccessError(DataAccessResult.OTHER_REASON)
    from_s, to_s = _range_moment(descriptor.from_value), _range_moment(descriptor.to_value)
    picked = [row for at, row in rows if from_s <= at <= to_s]
    if not descriptor.selected_values:
        return picked
    names = [(int(c[0].value), c[1], int(c[2].value)) for c in columns]  # type: ignore[attr-defined]
    indexes = []
    for column in descriptor.selected_values:
        key = (column.class_id, column.logical_name, column.attribute_index)
        if key not in names:
            raise _AccessError(DataAccessResult.OTHER_REASON)
        indexes.append(names.index(key))
    return [tuple(row[i] for i in indexes) for row in picked]


def _select_by_entry(
    rows: list[tuple[float, tuple[object, ...]]], parameters: bytes
) -> list[tuple[object, ...]]:
    fields = axdr.decode(parameters)
    if not isinstance(fields, tuple) or len(fields) != 4:
        raise ValueError("entry_descriptor is not a structure of 4 elements")
    from_entry, to_entry, from_value, to_value = (int(value) for value in fields)
    count = len(rows)
    last_entry = count if to_entry == 0 else min(to_entry, count)
    picked = [row for _, row in rows[max(from_entry, 1) - 1 : last_entry]]
    first_column = max(from_value, 1) - 1
    last_column = None if to_value == 0 else to_value
    return [row[first_column:last_column] for row in picked]


# --- the association ----------------------------------------------------------------


class CosemSession:
    """One application association with a client (sans-I/O; see the module doc).

    Args:
        meter: the meter this association reads.
        client_address: the client SAP (HDLC client address or wrapper wPort).
        max_receive_pdu_size: the server's max receive PDU size (AARE).
    """

    def __init__(
        self, meter: DlmsMeter, client_address: int, *, max_receive_pdu_size: int = 1024
    ) -> None:
        self.meter = meter
        self.client_address = client_address
        self.max_receive_pdu_size = max_receive_pdu_size
        self.associated = False
        self.conformance = Conformance.NONE
        self.client_pdu_size = max_receive_pdu_size
        self._blocks: list[bytes] = []
        self._block_number = 0
        self._block_invoke = 0
        self._profile_transfer = False  # the GET under way reads a profile buffer
        self.errors = 0

    def receive_apdu(self, data: bytes) -> bytes | None:
        """Take one request APDU; return the answer's bytes (None: nothing to answer)."""
        self.meter.requests += 1
        if data[:2] == _SET_REQUEST_NORMAL and len(data) >= 14 and _is_clock_time(data):
            return self._set(data)  # any other SET: not supported (below, as before)
        try:
            request = apdu.parse_apdu(data)
        except CodecError as exc:
            log.debug("malformed APDU %s: %s", data[:32].hex(), exc)
            self.errors += 1
            return self._exception(data)
        try:
            response = self._answer(request)
        except Exception:  # a meter never crashes on a request
            log.exception("DLMS server failed on %s", type(request).__name__)
            self.errors += 1
            response = ExceptionResponse(
                ExceptionStateError.SERVICE_NOT_ALLOWED, ExceptionServiceError.OTHER_REASON
            )
        if response is None:
            return None
        answer = apdu.encode_apdu(response)  # type: ignore[arg-type]
        if self._reads_profile_buffer(request) and isinstance(
            response, GetResponseNormal | GetResponseWithDatablock
        ):
            return _profile_answer_variant(answer, self.meter.faults.profile_answer)
        return answer

    def _reads_profile_buffer(self, request: object) -> bool:
        """Whether `request` is (a block of) a GET of a profile's buffer (class 7, attr 2)."""
        if isinstance(request, GetRequestNormal):
            descriptor = request.descriptor
            self._profile_transfer = (descriptor.class_id, descriptor.attribute_id) == (
                CLASS_PROFILE,
                2,
            )
        elif not isinstance(request, GetRequestNext):
            self._profile_transfer = False
        return self._profile_transfer

    def _set(self, data: bytes) -> bytes:
        """SET-Request-Normal (Green Book §9.3.6): only the clock's time, by the management
        client. Layout: C1 01 invoke, class-id (2), instance-id (6), attribute (1),
        access-selection flag (1, must be 0), the value (A-XDR Data)."""
        if not self.associated:  # as for a GET outside an association
            return apdu.encode_apdu(
                ExceptionResponse(
                    ExceptionStateError.SERVICE_NOT_ALLOWED,
                    ExceptionServiceError.OPERATION_NOT_POSSIBLE,
                )
            )
        invoke = data[2]
        result = DataAccessResult.SUCCESS
        if data[12] != 0:
            result = DataAccessResult.OTHER_REASON  # no selective access on a clock
        elif self.client_address != MANAGEMENT_CLIENT:
            result = DataAccessResult.READ_WRITE_DENIED
        else:
            try:
                value = axdr.decode(data[13:])
                when = axdr.decode_date_time(value)  # type: ignore[arg-type]
                moment = when if isinstance(when, dt.datetime) else when.to_datetime()
                if moment is None:
                    raise ValueError("a date-time with wildcards")
                self.meter.set_clock(moment.timestamp())
            except (CodecError, ValueError, TypeError) as exc:
                log.debug("bad clock SET: %s", exc)
                result = DataAccessResult.TYPE_UNMATCHED
        return bytes((0xC5, 0x01, invoke, int(result)))

    def _exception(self, data: bytes) -> bytes:
        service_error = (
            ExceptionServiceError.PDU_TOO_LONG
            if len(data) > self.max_receive_pdu_size
            else ExceptionServiceError.SERVICE_NOT_SUPPORTED
        )
        return apdu.encode_apdu(
            ExceptionResponse(ExceptionStateError.SERVICE_UNKNOWN, service_error)
        )

    def _answer(self, request: object) -> object:
        if isinstance(request, Aarq):
            return self._associate(request)
        if isinstance(request, Rlrq):
            self.associated = False
            self._blocks = []
            return Rlre()
        if isinstance(request, GetRequestNormal | GetRequestNext | GetRequestWithList):
            if not self.associated:
                return ExceptionResponse(
                    ExceptionStateError.SERVICE_NOT_ALLOWED,
                    ExceptionServiceError.OPERATION_NOT_POSSIBLE,
                )
            return self._get(request)
        return ExceptionResponse(
            ExceptionStateError.SERVICE_UNKNOWN, ExceptionServiceError.SERVICE_NOT_SUPPORTED
        )

    # -- association --------------------------------------------------------

    def _associate(self, aarq: Aarq) -> Aare:
        def reject(diagnostic: int, information: object = None) -> Aare:
            return Aare(
                AssociationResult.REJECTED_PERMANENT,
                diagnostic,
                user_information=information,  # type: ignore[arg-type]
            )

        if self.associated:
            return reject(AcseServiceUserDiagnostic.NO_REASON_GIVEN)
        if aarq.application_context != apdu.ApplicationContextName.LOGICAL_NAME:
            return reject(AcseServiceUserDiagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
        initiate = aarq.user_information
        if not isinstance(initiate, InitiateRequest):
            return reject(AcseServiceUserDiagnostic.NO_REASON_GIVEN)
        mechanism = aarq.mechanism
        if self.client_address == MANAGEMENT_CLIENT and mechanism != AuthenticationMechanism.LLS:
            return reject(AcseServiceUserDiagnostic.AUTHENTICATION_REQUIRED)
        if mechanism == AuthenticationMechanism.LLS:
            if aarq.authentication_value != self.meter.password.encode("latin-1"):
                return reject(AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE)
        elif mechanism not in (None, AuthenticationMechanism.LOWEST):
            return reject(AcseServiceUserDiagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED)
        if self.client_address not in (PUBLIC_CLIENT, MANAGEMENT_CLIENT):
            return reject(AcseServiceUserDiagnostic.CALLING_AP_TITLE_NOT_RECOGNIZED)
        initiate_error = None
        if initiate.proposed_dlms_version < 6:
            initiate_error = apdu.InitiateError.DLMS_VERSION_TOO_LOW
        elif initiate.client_max_receive_pdu_size and (
            initiate.client_max_receive_pdu_size < _MIN_PDU_SIZE
        ):
            initiate_error = apdu.InitiateError.PDU_SIZE_TOO_SHORT
        if initiate_error is not None:
            return reject(
                AcseServiceUserDiagnostic.NO_REASON_GIVEN,
                ConfirmedServiceError(
                    ConfirmedService.INITIATE_ERROR, ServiceErrorType.INITIATE, initiate_error
                ),
            )
        self.conformance = apdu.negotiate_conformance(
            initiate.proposed_conformance, SUPPORTED_CONFORMANCE
        )
        # 0 means "no limit" (Green Book): the largest the length field states.
        self.client_pdu_size = initiate.client_max_receive_pdu_size or 0xFFFF
        self.associated = True
        return Aare(
            AssociationResult.ACCEPTED,
            AcseServiceUserDiagnostic.NULL,
            user_information=InitiateResponse(self.conformance, self.max_receive_pdu_size),
        )

    # -- GET ----------------------------------------------------------------

    def _read(self, descriptor: apdu.CosemAttributeDescriptor, selection: object) -> object:
        if selection is not None and not self.conformance & Conformance.SELECTIVE_ACCESS:
            return DataAccessResult.OTHER_REASON
        return self.meter.get_attribute(
            descriptor.class_id,
            descriptor.instance_id,
            descriptor.attribute_id,
            selection,  # type: ignore[arg-type]
            client_address=self.client_address,
        )

    def _get(self, request: GetRequestNormal | GetRequestNext | GetRequestWithList) -> object:
        invoke = request.invoke_id_and_priority
        if isinstance(request, GetRequestNext):
            return self._next_block(request)
        self._blocks = []
        if isinstance(request, GetRequestNormal):
            result = self._read(request.descriptor, request.access_selection)
            response: object = GetResponseNormal(result, invoke)  # type: ignore[arg-type]
            encoded = apdu.encode_apdu(response)  # type: ignore[arg-type]
            if len(encoded) <= self.client_pdu_size:
                return response
            assert isinstance(result, bytes)
            return self._start_blocks(result, invoke)
        if not self.conformance & Conformance.MULTIPLE_REFERENCES:
            return ExceptionResponse(
                ExceptionStateError.SERVICE_NOT_ALLOWED, ExceptionServiceError.SERVICE_NOT_SUPPORTED
            )
        results = tuple(
            self._read(item.descriptor, item.access_selection) for item in request.attributes
        )
        response = GetResponseWithList(results, invoke)  # type: ignore[arg-type]
        encoded = apdu.encode_apdu(response)
        if len(encoded) <= self.client_pdu_size:
            return response
        # The raw data of a with-list transfer: the SEQUENCE OF Get-Data-Result.
        return self._start_blocks(encoded[3:], invoke)

    def _start_blocks(self, data: bytes, invoke: int) -> object:
        if not self.conformance & Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ:
            return GetResponseNormal(DataAccessResult.OTHER_REASON, invoke)
        size = max(1, self.client_pdu_size - _DATABLOCK_OVERHEAD)
        self._blocks = [data[i : i + size] for i in range(0, len(data), size)]
        self._block_number = 0
        self._block_invoke = invoke
        return self._send_block(invoke)

    def _send_block(self, invoke: int) -> GetResponseWithDatablock:
        self._block_number += 1
        block = self._blocks.pop(0)
        return GetResponseWithDatablock(not self._blocks, self._block_number, block, invoke)

    def _next_block(self, request: GetRequestNext) -> GetResponseWithDatablock:
        invoke = request.invoke_id_and_priority
        if not self._blocks:
            return GetResponseWithDatablock(
                True, request.block_number, DataAccessResult.NO_LONG_GET_IN_PROGRESS, invoke
            )
        if request.block_number != self._block_number:
            self._blocks = []
            return GetResponseWithDatablock(
                True, request.block_number, DataAccessResult.DATA_BLOCK_NUMBER_INVALID, invoke
            )
        return self._send_block(invoke)
