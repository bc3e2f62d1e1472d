"""Uplink batch format v1 (docs/uplink-format.md): layout, limits, refusals, JSON form."""

from __future__ import annotations

import json
import math
import struct
import zlib
from array import array
from types import ModuleType

import pytest

from fastcodec._obis_types import Obis
from fastcodec._uplink_types import Batch, QualityFlag, Reading
from fastcodec.exceptions import ChecksumError, CodecError, EncodeError, FrameError

ENERGY_IMPORT = Obis(1, 0, 1, 8, 0)
POWER_IMPORT = Obis(1, 0, 1, 7, 0)

# The worked example of docs/uplink-format.md §"Worked example".
EXAMPLE_READINGS = [
    Reading("MTR-1", ENERGY_IMPORT, 1_700_000_000_000, 1234.5, "kWh", 0),
    Reading("MTR-1", POWER_IMPORT, 1_700_000_000_000, 0.25, "kW", QualityFlag.AGENT_TIMESTAMP),
    Reading("MTR-1", ENERGY_IMPORT, 1_700_000_060_000, 1234.75, "kWh", 0),
]
EXAMPLE_HEX = (
    "56535542"
    "01"
    "00"
    "0700000000000000"
    "6052e6cf8b010000"
    "03000000"
    "07"
    "67772d30303432"
    "0100"
    "05"
    "4d54522d31"
    "0200"
    "0100010800ff"
    "0100010700ff"
    "0200"
    "03"
    "6b5768"
    "02"
    "6b57"
    "000000"
    "000100"
    "000100"
    "0000"
    "0800"
    "0000"
    "00000000004a9340"
    "000000000000d03f"
    "00000000004b9340"
    "bfa907"
    "00"
    "c0a907"
    "4d42dfd3"
)


def example_batch() -> Batch:
    return Batch.from_readings("gw-0042", 7, 1_700_000_060_000, EXAMPLE_READINGS)


def with_crc(body: bytes) -> bytes:
    """Re-seal a hand-edited payload so that the parser, not the CRC, sees the edit."""
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_worked_example_encodes_to_the_documented_bytes(uplink: ModuleType) -> None:
    encoded = uplink.encode_batch(example_batch())
    assert encoded.hex() == bytes.fromhex(EXAMPLE_HEX).hex()


def test_worked_example_decodes_to_its_readings(uplink: ModuleType) -> None:
    batch = uplink.decode_batch(bytes.fromhex(EXAMPLE_HEX))
    assert batch == example_batch()
    assert (batch.gateway_id, batch.sequence, batch.created_at_ms) == (
        "gw-0042",
        7,
        1_700_000_060_000,
    )
    assert list(batch.readings()) == EXAMPLE_READINGS
    assert len(batch) == 3


def test_decoded_columns_are_arrays_of_the_documented_types(uplink: ModuleType) -> None:
    batch = uplink.decode_batch(bytes.fromhex(EXAMPLE_HEX))
    typecodes = [
        column.typecode
        for column in (
            batch.meter_index,
            batch.obis_index,
            batch.unit_index,
            batch.timestamps_ms,
            batch.values,
            batch.quality,
        )
    ]
    assert typecodes == ["H", "H", "H", "q", "d", "H"]


def test_empty_batch_round_trips(uplink: ModuleType) -> None:
    batch = Batch.from_readings("g", 0, 0, [])
    encoded = uplink.encode_batch(batch)
    assert len(encoded) == 38  # the smallest batch there is
    assert uplink.decode_batch(encoded) == batch


def test_more_than_256_meters_use_two_byte_indices(uplink: ModuleType) -> None:
    readings = [Reading(f"M{i}", ENERGY_IMPORT, i, float(i), "kWh", 0) for i in range(300)]
    batch = Batch.from_readings("gw", 1, 0, readings)
    decoded = uplink.decode_batch(uplink.encode_batch(batch))
    assert decoded == batch
    assert list(decoded.readings()) == readings


def test_special_floats_survive_bit_for_bit(uplink: ModuleType) -> None:
    quiet_nan_with_payload = struct.unpack("<d", bytes.fromhex("0100000000f8ff7f"))[0]
    values = [math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, quiet_nan_with_payload]
    readings = [Reading("m", ENERGY_IMPORT, 0, value, "", 0) for value in values]
    batch = Batch.from_readings("gw", 1, 0, readings)
    decoded = uplink.decode_batch(uplink.encode_batch(batch))
    assert decoded.values.tobytes() == array("d", values).tobytes()


def test_extreme_timestamps_and_sequence_round_trip(uplink: ModuleType) -> None:
    int64_min, int64_max = -(2**63), 2**63 - 1
    readings = [
        Reading("m", ENERGY_IMPORT, int64_max, 1.0, "", 0),
        Reading("m", ENERGY_IMPORT, int64_min, 1.0, "", 0),
        Reading("m", ENERGY_IMPORT, 0, 1.0, "", 0xFFFF),
    ]
    batch = Batch.from_readings("gw", 2**64 - 1, int64_min, readings)
    assert uplink.decode_batch(uplink.encode_batch(batch)) == batch


def test_serials_at_the_length_limit_and_unicode(uplink: ModuleType) -> None:
    serial = "é" * 32  # 64 UTF-8 bytes: the limit
    readings = [
        Reading(serial, ENERGY_IMPORT, 0, 1.0, "m³", 0),
        Reading("电表-7", POWER_IMPORT, 0, 2.0, "kW", 0),
    ]
    batch = Batch.from_readings("网关-1", 1, 0, readings)
    assert list(uplink.decode_batch(uplink.encode_batch(batch)).readings()) == readings


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gateway_id": ""}, "gateway id"),
        ({"gateway_id": "g" * 65}, "gateway id"),
        ({"gateway_id": "\udc00"}, "gateway id"),
        ({"meters": ("m" * 65,)}, "meter serial"),
        ({"meters": ("",)}, "meter serial"),
        ({"units": ("u" * 17, "kW")}, "unit"),
        ({"sequence": -1}, "sequence"),
        ({"sequence": 2**64}, "sequence"),
        ({"created_at_ms": 2**63}, "created_at_ms"),
        ({"obis_codes": ((1, 0, 1, 8, 0, 256), POWER_IMPORT)}, "OBIS"),
        ({"meter_index": array("H", [0, 1, 0])}, "meter index"),
        ({"timestamps_ms": array("q", [0])}, "timestamps_ms"),
    ],
)
def test_encode_refuses_what_the_format_cannot_carry(
    uplink: ModuleType, change: dict[str, object], message: str
) -> None:
    batch = example_batch()
    for name, value in change.items():
        setattr(batch, name, value)
    with pytest.raises(EncodeError, match=message):
        uplink.encode_batch(batch)


def test_batch_refuses_values_that_do_not_fit_their_column() -> None:
    with pytest.raises(EncodeError, match="quality"):
        Batch.from_readings("gw", 0, 0, [Reading("m", ENERGY_IMPORT, 0, 1.0, "", 0x10000)])
    with pytest.raises(EncodeError, match="timestamps_ms"):
        Batch.from_readings("gw", 0, 0, [Reading("m", ENERGY_IMPORT, 2**63, 1.0, "", 0)])


def test_a_flipped_bit_is_a_checksum_error(uplink: ModuleType) -> None:
    encoded = bytearray(bytes.fromhex(EXAMPLE_HEX))
    encoded[80] ^= 0x04
    with pytest.raises(ChecksumError) as caught:
        uplink.decode_batch(bytes(encoded))
    assert caught.value.offset == len(encoded) - 4


@pytest.mark.parametrize("length", [0, 1, 4, 5, 20, 37, 60, 114])
def test_truncated_batches_are_frame_errors(uplink: ModuleType, length: int) -> None:
    with pytest.raises(FrameError):
        uplink.decode_batch(bytes.fromhex(EXAMPLE_HEX)[:length])


def test_unknown_version_is_refused_before_the_checksum(uplink: ModuleType) -> None:
    encoded = bytearray(bytes.fromhex(EXAMPLE_HEX))
    encoded[4] = 2
    with pytest.raises(FrameError, match="version 2") as caught:
        uplink.decode_batch(bytes(encoded))
    assert caught.value.offset == 4 and not isinstance(caught.value, ChecksumError)


def test_bad_magic_is_refused(uplink: ModuleType) -> None:
    with pytest.raises(FrameError, match="magic") as caught:
        uplink.decode_batch(b"VSUX" + bytes.fromhex(EXAMPLE_HEX)[4:])
    assert caught.value.offset == 0


def test_must_understand_flags_are_refused_and_informational_ones_ignored(
    uplink: ModuleType,
) -> None:
    body = bytearray(bytes.fromhex(EXAMPLE_HEX)[:-4])
    body[5] = 0x01
    with pytest.raises(FrameError, match="flags") as caught:
        uplink.decode_batch(with_crc(bytes(body)))
    assert caught.value.offset == 5
    body[5] = 0xF0
    assert uplink.decode_batch(with_crc(bytes(body))) == example_batch()


def test_a_hostile_reading_count_is_refused_before_allocation(uplink: ModuleType) -> None:
    body = bytearray(bytes.fromhex(EXAMPLE_HEX)[:-4])
    body[22:26] = (999_999).to_bytes(4, "little")
    with pytest.raises(FrameError, match="cannot fit") as caught:
        uplink.decode_batch(with_crc(bytes(body)))
    assert caught.value.offset == 22
    body[22:26] = (0xFFFFFFFF).to_bytes(4, "little")
    with pytest.raises(FrameError, match="at most"):
        uplink.decode_batch(with_crc(bytes(body)))


def test_a_hostile_dictionary_count_is_refused(uplink: ModuleType) -> None:
    body = bytearray(bytes.fromhex(EXAMPLE_HEX)[:-4])
    body[34:36] = (0xFFFF).to_bytes(2, "little")  # meter count
    with pytest.raises(FrameError, match="meters cannot fit") as caught:
        uplink.decode_batch(with_crc(bytes(body)))
    assert caught.value.offset == 34


def test_an_index_outside_its_dictionary_is_refused(uplink: ModuleType) -> None:
    body = bytearray(bytes.fromhex(EXAMPLE_HEX)[:-4])
    body[0x45] = 2  # first OBIS index; the dictionary has 2 entries
    with pytest.raises(FrameError, match="OBIS index 2") as caught:
        uplink.decode_batch(with_crc(bytes(body)))
    assert caught.value.offset == 0x45


def test_invalid_utf8_in_a_serial_is_refused(uplink: ModuleType) -> None:
    body = bytearray(bytes.fromhex(EXAMPLE_HEX)[:-4])
    body[39] = 0xFF  # third byte of "MTR-1"
    with pytest.raises(FrameError, match="UTF-8") as caught:
        uplink.decode_batch(with_crc(bytes(body)))
    assert caught.value.offset == 39


def test_bytes_after_the_timestamps_are_refused(uplink: ModuleType) -> None:
    body = bytes.fromhex(EXAMPLE_HEX)[:-4] + b"\x00"
    with pytest.raises(FrameError, match="left over"):
        uplink.decode_batch(with_crc(body))


def test_an_overlong_varint_is_refused(uplink: ModuleType) -> None:
    body = bytes.fromhex(EXAMPLE_HEX)[: -4 - 7] + b"\xff" * 9 + b"\x02" + b"\x00\x00"
    with pytest.raises(FrameError, match="64 bits"):
        uplink.decode_batch(with_crc(body))


def test_decode_accepts_any_bytes_like(uplink: ModuleType) -> None:
    raw = bytes.fromhex(EXAMPLE_HEX)
    for buffer in (bytearray(raw), memoryview(raw)):
        assert uplink.decode_batch(buffer) == example_batch()


def test_json_form_round_trips_the_readings(uplink: ModuleType) -> None:
    text = uplink.batch_to_json(example_batch())
    document = json.loads(text)
    assert document["format"] == "voltstack.uplink" and document["version"] == 1
    assert document["readings"][1] == {
        "meter": "MTR-1",
        "obis": "1-0:1.7.0",
        "timestamp_ms": 1_700_000_000_000,
        "value": 0.25,
        "unit": "kW",
        "quality": 8,
    }
    assert uplink.batch_from_json(text) == example_batch()


def test_json_form_carries_non_finite_values_as_strings(uplink: ModuleType) -> None:
    readings = [Reading("m", ENERGY_IMPORT, 0, v, "", 0) for v in (math.nan, math.inf, -math.inf)]
    text = uplink.batch_to_json(Batch.from_readings("gw", 1, 0, readings))
    assert [row["value"] for row in json.loads(text)["readings"]] == [
        "NaN",
        "Infinity",
        "-Infinity",
    ]
    values = list(uplink.batch_from_json(text).values)
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[",
        "[]",
        "[" * 100_000 + "]" * 100_000,
        '{"format": "other", "version": 1}',
        '{"format": "voltstack.uplink", "version": 2}',
        '{"format": "voltstack.uplink", "version": 1, "readings": {}}',
        '{"format": "voltstack.uplink", "version": 1, "gateway_id": "g", "sequence": -1,'
        ' "created_at_ms": 0, "readings": []}',
        '{"format": "voltstack.uplink", "version": 1, "gateway_id": "g", "sequence": 0,'
        ' "created_at_ms": 0, "readings": [{"meter": "m", "obis": "x", "timestamp_ms": 0,'
        ' "value": 1, "unit": "", "quality": 0}]}',
        '{"format": "voltstack.uplink", "version": 1, "gateway_id": "g", "sequence": 0,'
        ' "created_at_ms": 0, "readings": [{"meter": "m", "obis": "1.8.0", "timestamp_ms": 0,'
        ' "value": true, "unit": "", "quality": 0}]}',
        '{"format": "voltstack.uplink", "version": 1, "gateway_id": "g", "sequence": 0,'
        ' "created_at_ms": 0, "readings": [{"meter": "m", "obis": "1.8.0", "timestamp_ms": 0,'
        ' "value": 1e999999, "unit": "", "quality": 70000}]}',
    ],
)
def test_bad_json_is_a_frame_error(uplink: ModuleType, text: str) -> None:
    with pytest.raises(FrameError):
        uplink.batch_from_json(text)


def test_quality_flags_are_the_documented_bits(uplink: ModuleType) -> None:
    assert uplink.QualityFlag.ESTIMATED == 0x01
    assert uplink.QualityFlag.CLOCK_INVALID == 0x02
    assert uplink.QualityFlag.OVERFLOW == 0x04
    assert uplink.QualityFlag.AGENT_TIMESTAMP == 0x08
    assert uplink.QualityFlag.REPLAYED == 0x10
    # Reserved bits travel unchanged (forward compatible).
    batch = Batch.from_readings("gw", 1, 0, [Reading("m", ENERGY_IMPORT, 0, 1.0, "", 0xFF00)])
    assert uplink.decode_batch(uplink.encode_batch(batch)).quality[0] == 0xFF00


def test_batch_equality_compares_values_bit_for_bit() -> None:
    one = Batch.from_readings("gw", 1, 0, [Reading("m", ENERGY_IMPORT, 0, math.nan, "", 0)])
    two = Batch.from_readings("gw", 1, 0, [Reading("m", ENERGY_IMPORT, 0, math.nan, "", 0)])
    assert one == two
    three = Batch.from_readings("gw", 1, 0, [Reading("m", ENERGY_IMPORT, 0, -math.nan, "", 0)])
    assert one != three


def test_every_refusal_is_a_codec_error(uplink: ModuleType) -> None:
    assert issubclass(ChecksumError, CodecError) and issubclass(FrameError, CodecError)
