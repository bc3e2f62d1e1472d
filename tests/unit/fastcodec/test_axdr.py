"""A-XDR / COSEM data: every type, date-times, capture buffers, real vectors.

Spec: IEC 62056-6-2 / DLMS UA Blue Book §4.1.5 (data types), §4.1.6.1 (date
and time), Green Book §9.5 (A-XDR).
"""

from __future__ import annotations

import datetime as dt
import json
from types import ModuleType

import pytest

from fastcodec._axdr_types import (
    DONT_CARE,
    BitString,
    ClockDateTime,
    ClockStatus,
    CompactArray,
    CosemDate,
    CosemDateTime,
    CosemTime,
    Tag,
    Typed,
    TypeDescription,
)
from fastcodec.exceptions import EncodeError, FrameError
from tests.conftest import VECTORS

DLMS = VECTORS / "dlms"
CET = dt.timezone(dt.timedelta(hours=1))


def _vectors(name: str) -> dict[str, bytes]:
    data = json.loads((DLMS / name).read_text())
    return {vector["name"]: bytes.fromhex(vector["hex"]) for vector in data["vectors"]}


# --- scalar types (Blue Book §4.1.5) ----------------------------------------------------

SCALARS = [
    ("00", None, None),
    ("0301", True, True),
    ("0300", False, False),
    ("05ffffffff", -1, Typed(Tag.DOUBLE_LONG, -1)),
    ("0680000000", 2**31, Typed(Tag.DOUBLE_LONG_UNSIGNED, 2**31)),
    ("0f80", -128, Typed(Tag.INTEGER, -128)),
    ("108000", -32768, Typed(Tag.LONG, -32768)),
    ("11ff", 255, Typed(Tag.UNSIGNED, 255)),
    ("12ffff", 65535, Typed(Tag.LONG_UNSIGNED, 65535)),
    ("148000000000000000", -(2**63), Typed(Tag.LONG64, -(2**63))),
    ("15ffffffffffffffff", 2**64 - 1, Typed(Tag.LONG64_UNSIGNED, 2**64 - 1)),
    ("1603", 3, Typed(Tag.ENUM, 3)),
    ("0d42", 0x42, Typed(Tag.BCD, 0x42)),  # BCD: the raw octet
    ("173fc00000", 1.5, Typed(Tag.FLOAT32, 1.5)),
    ("18c004000000000000", -2.5, Typed(Tag.FLOAT64, -2.5)),
    ("0903010203", b"\x01\x02\x03", b"\x01\x02\x03"),
    ("0900", b"", b""),
    ("0a0341424b", "ABK", Typed(Tag.VISIBLE_STRING, "ABK")),
    ("0c03c3a462", "äb", Typed(Tag.UTF8_STRING, "äb")),
    ("040ba5e0", BitString(11, b"\xa5\xe0"), BitString(11, b"\xa5\xe0")),
    ("ff", DONT_CARE, DONT_CARE),
]


@pytest.mark.parametrize(("hex_value", "plain", "typed"), SCALARS)
def test_scalar_types_decode_and_encode_back(
    axdr: ModuleType, hex_value: str, plain: object, typed: object
) -> None:
    octets = bytes.fromhex(hex_value)
    assert axdr.decode(octets) == plain
    assert type(axdr.decode(octets)) is type(plain)
    assert axdr.decode_typed(octets) == typed
    assert axdr.encode(typed) == octets


def test_bit_string_bits_first_bit_is_the_high_bit() -> None:
    assert BitString(11, b"\xa5\xe0").bits() == [
        True, False, True, False, False, True, False, True, True, True, True,
    ]  # fmt: skip


def test_structure_is_a_tuple_and_array_a_list(axdr: ModuleType) -> None:
    # structure { octet-string[6] OBIS, double-long-unsigned, structure {integer, enum} }
    octets = bytes.fromhex("020309060100010700ff060000011802020f00161b")
    assert axdr.decode(octets) == (b"\x01\x00\x01\x07\x00\xff", 280, (0, 27))
    assert axdr.decode(bytes.fromhex("0103110111021103")) == [1, 2, 3]
    assert axdr.encode(axdr.decode_typed(octets)) == octets


def test_decode_from_returns_the_offset_after_the_value(axdr: ModuleType) -> None:
    octets = bytes.fromhex("aaaa1205dcbb")
    assert axdr.decode_from(octets, 2) == (1500, 5)
    value, after = axdr.decode_typed_from(octets, 2)
    assert (value, after) == (Typed(Tag.LONG_UNSIGNED, 1500), 5)


# --- lengths, truncation, hostile input ------------------------------------------------


@pytest.mark.parametrize(
    ("length_octets", "length"),
    [
        ("05", 5),
        ("7f", 127),
        ("8180", 128),
        ("820100", 256),
        ("83000102", 258),
        ("8400000103", 259),
    ],
)
def test_length_forms(axdr: ModuleType, length_octets: str, length: int) -> None:
    # Green Book §9.5: one octet below 0x80, else 0x80 + number of length octets.
    octets = b"\x09" + bytes.fromhex(length_octets) + bytes(length)
    assert axdr.decode(octets) == bytes(length)


def test_encoder_uses_the_shortest_length_form(axdr: ModuleType) -> None:
    assert axdr.encode(bytes(127))[:2] == b"\x09\x7f"
    assert axdr.encode(bytes(128))[:3] == b"\x09\x81\x80"
    assert axdr.encode(bytes(256))[:4] == b"\x09\x82\x01\x00"


@pytest.mark.parametrize(
    "hex_value",
    [
        "",  # no tag
        "09",  # no length
        "0980",  # indefinite length form
        "098500000000",  # 5 length octets
        "0984ffffffff00",  # length beyond the input: refused before allocating
        "0182ffff00",  # array count beyond the input
        "06000001",  # truncated double-long-unsigned
        "190102",  # truncated date-time
        "0c02c328",  # invalid UTF-8
        "07",  # unknown tag
        "0403ff00",  # 3 bits need 1 octet: one left over
        "1300",  # compact-array without contents
        "13000100",  # compact-array of null-data: elements that take no octets
        "130100051103010203",  # array[5] of unsigned, 3 octets of contents
    ],
)
def test_malformed_input_is_a_frame_error(axdr: ModuleType, hex_value: str) -> None:
    with pytest.raises(FrameError):
        axdr.decode(bytes.fromhex(hex_value))


def test_huge_length_does_not_allocate(axdr: ModuleType) -> None:
    with pytest.raises(FrameError) as caught:
        axdr.decode(bytes.fromhex("0984ffffffff"))
    assert caught.value.offset == 1


def test_trailing_octets_are_a_frame_error(axdr: ModuleType) -> None:
    with pytest.raises(FrameError) as caught:
        axdr.decode(bytes.fromhex("110100"))
    assert caught.value.offset == 2


def test_nesting_is_capped(axdr: ModuleType) -> None:
    depth = axdr.MAX_DEPTH
    accepted = b"\x01\x01" * depth + b"\x00"
    value = axdr.decode(accepted)
    for _ in range(depth):
        value = value[0]
    assert value is None
    with pytest.raises(FrameError):
        axdr.decode(b"\x01\x01" * (depth + 1) + b"\x00")
    with pytest.raises(FrameError):
        axdr.decode(b"\x02\x01" * 100_000 + b"\x00")


def test_not_bytes_is_a_type_error(axdr: ModuleType) -> None:
    with pytest.raises(TypeError):
        axdr.decode("0100")


def test_bytearray_and_memoryview_are_accepted(axdr: ModuleType) -> None:
    assert axdr.decode(bytearray(b"\x11\x05")) == 5
    assert axdr.decode(memoryview(b"\x11\x05")) == 5


# --- date and time (Blue Book §4.1.6.1) ------------------------------------------------


def test_date_time_deviation_is_utc_minus_local(axdr: ModuleType) -> None:
    # 2019-12-31 23:00:00, deviation 0xFFC4 = -60: CET, i.e. UTC+01:00 (the
    # gurux default and the DLMS practice; dlms-cosem test_parsers).
    value = axdr.decode(bytes.fromhex("1907e30c1f0217000000ffc400"))
    assert isinstance(value, ClockDateTime)
    assert value == dt.datetime(2019, 12, 31, 23, 0, tzinfo=CET)
    assert value.utcoffset() == dt.timedelta(hours=1)
    assert value.clock_status == 0


def test_date_time_clock_status_is_kept(axdr: ModuleType) -> None:
    # Summer time in Oslo: deviation -120, clock status daylight saving active.
    value = axdr.decode(bytes.fromhex("1907e8070f010c1e0000ff8880"))
    assert value == dt.datetime(2024, 7, 15, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert value.clock_status == ClockStatus.DAYLIGHT_SAVING_ACTIVE
    assert axdr.encode(value) == bytes.fromhex("1907e8070f010c1e0000ff8880")


def test_date_time_unspecified_hundredths_and_weekday_still_give_a_datetime(
    axdr: ModuleType,
) -> None:
    # As gurux-dlms writes it: day of week and hundredths 0xFF.
    value = axdr.decode(bytes.fromhex("1907e80301ff0c0000ffffc400"))
    assert value == dt.datetime(2024, 3, 1, 12, 0, tzinfo=CET)


@pytest.mark.parametrize(
    "hex_value",
    [
        "1907e30c1001073b28ff8000ff",  # deviation 0x8000 not specified (Aidon SE list)
        "19ffff0c1001073b28ff000000",  # year not specified
        "1907e3fe1001073b28ff000000",  # month 0xFE: daylight saving begin
        "1907e30cfe01073b28ff000000",  # day 0xFE: last day of month
        "1907e30c10010ffffff0000000",  # hour/minute/second not specified
        "1907e3021e01073b28ff000000",  # 30 February: not a date
    ],
)
def test_date_time_with_wildcards_keeps_the_raw_fields(axdr: ModuleType, hex_value: str) -> None:
    octets = bytes.fromhex(hex_value)
    value = axdr.decode(octets)
    assert isinstance(value, CosemDateTime)
    assert value.to_datetime() is None
    assert axdr.decode_typed(octets) == value
    assert axdr.encode(value) == octets


def test_typed_date_time_is_always_the_raw_fields(axdr: ModuleType) -> None:
    octets = bytes.fromhex("1907e80301ff0c0000ffffc400")
    typed = axdr.decode_typed(octets)
    assert typed == CosemDateTime(2024, 3, 1, 0xFF, 12, 0, 0, 0xFF, -60, 0)
    assert axdr.encode(typed) == octets


def test_encode_datetime_fills_the_weekday_and_deviation(axdr: ModuleType) -> None:
    value = dt.datetime(2024, 3, 1, 12, 0, 0, 500000, tzinfo=CET)  # a Friday
    assert axdr.encode(value) == bytes.fromhex("1907e80301050c000032ffc400")
    naive = dt.datetime(2024, 3, 1, 12, 0)
    assert axdr.encode(naive) == bytes.fromhex("1907e80301050c0000008000" + "00")


def test_date_and_time_types(axdr: ModuleType) -> None:
    assert axdr.decode(bytes.fromhex("1a07e8030105")) == dt.date(2024, 3, 1)
    assert axdr.decode(bytes.fromhex("1affff03ffff")) == CosemDate(0xFFFF, 3, 0xFF, 0xFF)
    assert axdr.decode(bytes.fromhex("1b0c1e00ff")) == dt.time(12, 30)
    assert axdr.decode(bytes.fromhex("1bff1e00ff")) == CosemTime(0xFF, 30, 0, 0xFF)
    for hex_value in ("1a07e8030105", "1affff03ffff", "1b0c1e0000", "1bff1e00ff"):
        octets = bytes.fromhex(hex_value)
        assert axdr.encode(axdr.decode_typed(octets)) == octets


def test_decode_date_time_reads_a_12_octet_clock(axdr: ModuleType) -> None:
    # dlms-cosem test_get: GET clock attribute, an octet-string of 12.
    octets = _vectors("dlms-cosem__tests_test_xdlms_test_get.json")["inline@line398"]
    value = axdr.decode_date_time(octets)
    assert value == dt.datetime(2021, 6, 3, 14, 9, 23, tzinfo=CET)
    with pytest.raises(FrameError):
        axdr.decode_date_time(octets[:11])


# --- compact-array ---------------------------------------------------------------------


def test_compact_array_of_structures(axdr: ModuleType) -> None:
    # compact-array, description structure{unsigned, double-long-unsigned},
    # contents 10 octets = 2 elements without tags.
    octets = bytes.fromhex("13020211 060a01000000020300000004".replace(" ", ""))
    assert axdr.decode(octets) == [(1, 2), (3, 4)]
    description = TypeDescription(
        Tag.STRUCTURE, 2, (TypeDescription(Tag.UNSIGNED), TypeDescription(Tag.DOUBLE_LONG_UNSIGNED))
    )
    typed = axdr.decode_typed(octets)
    assert typed == CompactArray(description, ((1, 2), (3, 4)))
    assert axdr.encode(typed) == octets


def test_compact_array_of_arrays_and_strings(axdr: ModuleType) -> None:
    # description array[2] of long-unsigned; then one of visible-strings.
    octets = bytes.fromhex("1301000212080001000200030004")
    assert axdr.decode(octets) == [[1, 2], [3, 4]]
    assert axdr.encode(axdr.decode_typed(octets)) == octets
    strings = bytes.fromhex("130a050241420143")
    assert axdr.decode(strings) == ["AB", "C"]
    assert axdr.encode(axdr.decode_typed(strings)) == strings


def test_compact_array_element_must_match_its_description(axdr: ModuleType) -> None:
    description = TypeDescription(Tag.UNSIGNED)
    with pytest.raises(EncodeError):
        axdr.encode(CompactArray(description, (300,)))
    with pytest.raises(EncodeError):
        axdr.encode(CompactArray(description, ("x",)))


# --- encoding errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        5,  # a plain int has no obvious width
        1.5,
        Typed(Tag.UNSIGNED, 256),
        Typed(Tag.DOUBLE_LONG, 2**31),
        Typed(Tag.LONG64_UNSIGNED, -1),
        Typed(Tag.UNSIGNED, True),
        Typed(Tag.FLOAT32, 1e300),
        Typed(Tag.VISIBLE_STRING, "€"),
        Typed(Tag.OCTET_STRING, 5),
        Typed(Tag.BOOLEAN, b"\x01"),
        BitString(9, b"\x00"),
        CosemDateTime(2024, 300, 1, 1, 0, 0, 0, 0, 0, 0),
        object(),
    ],
)
def test_values_that_cannot_be_encoded(axdr: ModuleType, value: object) -> None:
    with pytest.raises(EncodeError):
        axdr.encode(value)


def test_encoding_is_depth_capped(axdr: ModuleType) -> None:
    value: list[object] = []
    value.append(value)  # a cycle
    with pytest.raises(EncodeError):
        axdr.encode(value)


def test_plain_python_values_encode(axdr: ModuleType) -> None:
    assert axdr.encode([None, (True, b"\x01")]) == bytes.fromhex("01020002020301090101")
    assert axdr.encode("ABK") == bytes.fromhex("0a0341424b")
    assert axdr.encode("äb") == bytes.fromhex("0c03c3a462")
    assert axdr.encode(Typed(Tag.OCTET_STRING, CosemDateTime(2024, 3, 1, 5, 0, 0, 0, 0, -60, 0)))[
        :2
    ] == bytes.fromhex("090c")


# --- capture buffers (profile generic, attribute 2) --------------------------------------


def test_capture_buffer_dlms_cosem_profile(axdr: ModuleType) -> None:
    # dlms-cosem test_parsers: 4 rows {clock octet-string[12], status u8,
    # 2 x double-long-unsigned}; the clock is sent in row 0 only (null after).
    octets = _vectors("dlms-cosem__tests_test_parsers.json")["data"]
    buffer = axdr.decode_capture_buffer(octets)
    assert buffer.row_count == 4
    assert buffer.end_offset == len(octets)
    clock, status, import_wh, export_wh = buffer.columns
    assert clock == [dt.datetime(2019, 12, 31, 23, 0, tzinfo=CET), None, None, None]
    assert status == [6] * 4
    assert import_wh == [1517] * 4
    assert export_wh == [1620] * 4
    # The generic decoder gives the same rows, the clock as its octets.
    rows = axdr.decode(octets)
    assert [row[1:] for row in rows] == list(zip(status, import_wh, export_wh, strict=True))
    assert axdr.encode(axdr.decode_typed(octets)) == octets


def _gurux_profile_buffer_info() -> bytes:
    # synthetic_gurux_loopback_session: the buffer comes in 6 HDLC I-frames
    # with the segmentation bit set (IEC 62056-46 §6.4.3.1, format 0xA8..).
    # Header: flag, format (2), dest (1), src (1), control, HCS (2); trailer
    # FCS (2) and flag. The info fields concatenated are the LLC header
    # E6 E7 00 and the GET-response-normal (C4 01 invoke-id, result 00 = data).
    session = json.loads((DLMS / "synthetic_gurux_loopback_session.json").read_text())
    frames = [
        bytes.fromhex(frame["hex"])
        for frame in session["frames"]
        if frame["step"] in ("GET-PG-buffer-resp", "GET-PG-buffer-more-resp")
    ]
    assert len(frames) == 6
    return b"".join(frame[8:-3] for frame in frames)


def test_capture_buffer_from_segmented_gurux_frames(axdr: ModuleType) -> None:
    info = _gurux_profile_buffer_info()
    assert info[:7] == bytes.fromhex("e6e700c401c100")
    buffer = axdr.decode_capture_buffer(info, 7)
    assert buffer.row_count == 24
    assert buffer.end_offset == len(info)
    clock, status, import_wh, export_wh = buffer.columns
    start = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    assert clock == [start + dt.timedelta(minutes=15 * row) for row in range(24)]
    assert status == [0] * 24
    assert import_wh == [100_000 + 37 * row for row in range(24)]
    assert export_wh == [5_000 + 3 * row for row in range(24)]


def test_capture_buffer_empty_and_malformed(axdr: ModuleType) -> None:
    assert axdr.decode_capture_buffer(b"\x01\x00") == ([], 0, 2)
    with pytest.raises(FrameError):
        axdr.decode_capture_buffer(b"\x02\x00")  # not an array
    with pytest.raises(FrameError):
        axdr.decode_capture_buffer(bytes.fromhex("010202011101020211011102"))  # widths 1, 2
    with pytest.raises(FrameError):
        axdr.decode_capture_buffer(bytes.fromhex("0101011101"))  # row is not a structure
    with pytest.raises(FrameError):
        axdr.decode_capture_buffer(bytes.fromhex("017f027f00"))  # 127 x 127 cells in 3 octets


def test_capture_buffer_cells_of_any_type(axdr: ModuleType) -> None:
    # A row {date-time tag 25, long, structure{integer, enum}, null, octet-string[6]}.
    row = "02051907e80301050c000000ffc40010fffe02020ffe161e0009060100010800ff"
    buffer = axdr.decode_capture_buffer(bytes.fromhex("0101" + row))
    assert buffer.columns == [
        [dt.datetime(2024, 3, 1, 12, tzinfo=CET)],
        [-2],
        [(-2, 30)],
        [None],
        [b"\x01\x00\x01\x08\x00\xff"],
    ]


# --- real vectors ----------------------------------------------------------------------


def _get_response_data(apdu: bytes) -> list[bytes | int]:
    """The Data parts of a GET-response normal or with-list (Green Book §9.3.6)."""
    assert apdu[0] == 0xC4
    if apdu[1] == 0x01:  # normal: invoke-id, result choice 0 = data
        return [apdu[4:]] if apdu[3] == 0 else [apdu[4]]
    assert apdu[1] == 0x03  # with-list: invoke-id, count, results
    return [apdu[4:]]


def test_get_response_normal_vectors(axdr: ModuleType) -> None:
    vectors = _vectors("dlms-cosem__tests_test_xdlms_test_get.json")
    # GET-response-normal, result data: double-long-unsigned 5009.
    assert axdr.decode(vectors["inline@line158"][4:]) == 5009


def test_get_response_with_list_vectors(axdr: ModuleType) -> None:
    vectors = _vectors("dlms-cosem__tests_test_xdlms_test_get.json")
    # GET-response-with-list: C4 03 invoke-id, count 2, then per result a
    # choice (0 = data) and the Data.
    apdu = vectors["inline@line392"]
    assert apdu[3] == 2 and apdu[4] == 0
    serial, after = axdr.decode_from(apdu, 5)
    assert serial == b"ISK1030777764366"
    assert apdu[after] == 0
    clock, end = axdr.decode_from(apdu, after + 1)
    assert axdr.decode_date_time(clock) == dt.datetime(2021, 6, 3, 14, 9, 23, tzinfo=CET)
    assert end == len(apdu)
    # Nine results of long-unsigned / octet-string / structure.
    apdu = vectors["inline@line424"]
    position, values = 4, []
    for _ in range(apdu[3]):
        assert apdu[position] == 0
        value, position = axdr.decode_from(apdu, position + 1)
        values.append(value)
    assert position == len(apdu)
    assert values[:2] == [50, 0]


def test_get_response_with_datablock_parts_are_truncated_data(axdr: ModuleType) -> None:
    # A first block of a 1440-row profile: the raw data alone is a truncated
    # array, which is a FrameError, not an IndexError.
    vectors = _vectors("dlms-cosem__tests_test_xdlms_test_get.json")
    with pytest.raises(FrameError):
        axdr.decode(vectors["inline@line215"])
    with pytest.raises(FrameError):
        axdr.decode_capture_buffer(vectors["inline@line215"])


def test_get_response_from_gurux_session(axdr: ModuleType) -> None:
    session = json.loads((DLMS / "synthetic_gurux_loopback_session.json").read_text())
    infos = {frame["step"]: frame["hdlc"].get("info_hex") for frame in session["frames"]}
    register = bytes.fromhex(infos["GET-1.8.0-resp"])
    assert axdr.decode(register[7:]) == 100_000
    capture_objects = axdr.decode(bytes.fromhex(infos["GET-PG-attr3-resp"])[7:])
    # {class id, logical name, attribute index, data index} per capture object.
    assert capture_objects == [
        (8, bytes.fromhex("0000010000ff"), 2, 0),
        (1, bytes.fromhex("0000600a01ff"), 2, 0),
        (3, bytes.fromhex("0100010800ff"), 2, 0),
        (3, bytes.fromhex("0100020800ff"), 2, 0),
    ]


NOTIFICATION_FILES = [
    "amshan__tests_test_aidon.json",
    "amshan__tests_test_kaifa.json",
    "amshan__tests_test_kamstrup.json",
]


def _notification_bodies() -> list[tuple[str, str, bytes]]:
    cases = []
    for file_name in NOTIFICATION_FILES:
        for name, octets in _vectors(file_name).items():
            if name.startswith("NOTIFICATION_BODY"):
                cases.append((file_name, name, octets))
    return cases


@pytest.mark.parametrize(("file_name", "name", "body"), _notification_bodies())
def test_data_notification_bodies_decode_and_round_trip(
    axdr: ModuleType, file_name: str, name: str, body: bytes
) -> None:
    value = axdr.decode(body)
    assert isinstance(value, list | tuple)
    assert axdr.encode(axdr.decode_typed(body)) == body
    # The full payload (LLC + DataNotification header) ends with the body.
    payloads = _vectors(file_name)
    payload = payloads[name.removeprefix("NOTIFICATION_BODY_").lower()]
    assert payload.endswith(body)
    assert axdr.decode_from(payload, len(payload) - len(body)) == (value, len(payload))


def test_aidon_values(axdr: ModuleType) -> None:
    bodies = _vectors("amshan__tests_test_aidon.json")
    # {OBIS 1.0.1.7.0.255 active power import, 280 W, {scaler 0, unit 27 = W}}
    assert axdr.decode(bodies["NOTIFICATION_BODY_NO_LIST_1"]) == [
        (bytes.fromhex("0100010700ff"), 280, (0, 27))
    ]
    items = axdr.decode(bodies["NOTIFICATION_BODY_NO_LIST_3"])
    assert items[0] == (bytes.fromhex("0101000281ff"), "AIDON_V0001")
    assert items[1] == (bytes.fromhex("0000600100ff"), "7359992892587665")
    assert items[9] == (bytes.fromhex("0100200700ff"), 2276, (-1, 35))  # 227.6 V
    clock = dict(item[:2] for item in items)[bytes.fromhex("0000010000ff")]
    # 2020-01-21 (Tuesday) 16:00:00, hundredths not specified, deviation 0.
    assert axdr.decode_date_time(clock) == dt.datetime(2020, 1, 21, 16, tzinfo=dt.UTC)
    se_list = axdr.decode(bodies["NOTIFICATION_BODY_SE_LIST"])
    se_clock = axdr.decode_date_time(se_list[0][1])
    assert se_clock == CosemDateTime(2019, 12, 16, 1, 7, 59, 40, 0xFF, -0x8000, 0xFF)


def test_kaifa_values(axdr: ModuleType) -> None:
    bodies = _vectors("amshan__tests_test_kaifa.json")
    assert axdr.decode(bodies["NOTIFICATION_BODY_NO_LIST_1"]) == (5852,)
    items = axdr.decode(bodies["NOTIFICATION_BODY_NO_LIST_3"])
    assert items[:3] == (b"KFM_001", b"6970631402614476", b"MA304H3E")
    assert items[3] == 4904  # active power import, W
    assert items[14:] == (79591144, 0, 889389, 3210932)  # energy registers, Wh
    se_items = axdr.decode(bodies["NOTIFICATION_BODY_SE_LIST"])
    clock = axdr.decode_date_time(se_items[se_items.index(bytes.fromhex("0000010000ff")) + 1])
    assert clock == dt.datetime(2021, 9, 22, 17, 35, 30, tzinfo=CET)


def test_kamstrup_values(axdr: ModuleType) -> None:
    bodies = _vectors("amshan__tests_test_kamstrup.json")
    items = axdr.decode(bodies["NOTIFICATION_BODY_NO_LIST_1_SINGLE_PHASE_REAL_SAMPLE"])
    assert items[0] == "Kamstrup_V0001"
    assert items[2] == "5705705705705702"
    assert items[4] == "6861111BN242101040"
    values = dict(zip(items[5::2], items[6::2], strict=False))
    assert values[bytes.fromhex("0101010700ff")] == 1896  # active power import, W


@pytest.mark.parametrize("data", ["1301", "130100"])
def test_truncated_compact_array_count_is_refused_where_it_starts(
    axdr: ModuleType, data: str
) -> None:
    # Found by the twins property test: the compiled twin read the 2-octet
    # count past the end of the input before this was fixed.
    with pytest.raises(FrameError) as refused:
        axdr.decode(bytes.fromhex(data))
    assert refused.value.offset == 2
