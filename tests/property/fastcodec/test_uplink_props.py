"""Property tests: uplink batches round-trip, the twins agree byte for byte, and
corrupted, truncated or random payloads raise nothing but CodecError."""

from __future__ import annotations

import struct
import zlib
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from fastcodec._obis_types import Obis
from fastcodec._uplink_types import (
    MAX_GATEWAY_ID_BYTES,
    MAX_SERIAL_BYTES,
    MAX_UNIT_BYTES,
    Batch,
    Reading,
)
from fastcodec.exceptions import ChecksumError, CodecError, FrameError
from tests.conftest import load_twin


def _utf8_text(min_size: int, max_bytes: int) -> st.SearchStrategy[str]:
    return st.text(min_size=min_size, max_size=max_bytes).filter(
        lambda text: len(text.encode("utf-8")) <= max_bytes
    )


serials = st.one_of(
    _utf8_text(1, MAX_SERIAL_BYTES),
    st.just("S" * MAX_SERIAL_BYTES),
    st.just("€" * (MAX_SERIAL_BYTES // 3)),
)
octet = st.integers(0, 255)
codes = st.builds(Obis, octet, octet, octet, octet, octet, octet)
units = st.one_of(
    st.sampled_from(["kWh", "kW", "V", "A", "", "m³", "kvarh"]), _utf8_text(0, MAX_UNIT_BYTES)
)
int64 = st.integers(-(2**63), 2**63 - 1)
timestamps = st.one_of(int64, st.integers(1_500_000_000_000, 1_900_000_000_000))
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(min_size=8, max_size=8).map(lambda raw: struct.unpack("<d", raw)[0]),
)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    meter_pool = draw(st.lists(serials, min_size=1, max_size=8))
    code_pool = draw(st.lists(codes, min_size=1, max_size=8))
    unit_pool = draw(st.lists(units, min_size=1, max_size=4))
    readings = draw(
        st.lists(
            st.builds(
                Reading,
                st.sampled_from(meter_pool),
                st.sampled_from(code_pool),
                timestamps,
                values,
                st.sampled_from(unit_pool),
                st.integers(0, 0xFFFF),
            ),
            max_size=40,
        )
    )
    return Batch.from_readings(
        draw(_utf8_text(1, MAX_GATEWAY_ID_BYTES)),
        draw(st.integers(0, 2**64 - 1)),
        draw(int64),
        readings,
    )


def _outcome(module: ModuleType, payload: bytes) -> object:
    try:
        return module.decode_batch(payload)
    except CodecError as exc:
        return (type(exc).__name__, str(exc), exc.offset if isinstance(exc, FrameError) else None)


def _seal(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


@settings(max_examples=100, deadline=None)
@given(batches())
def test_round_trip(uplink: ModuleType, batch: Batch) -> None:
    assert uplink.decode_batch(uplink.encode_batch(batch)) == batch


@settings(max_examples=100, deadline=None)
@given(batches())
def test_twins_write_the_same_bytes_and_read_each_other(batch: Batch) -> None:
    pure, compiled = load_twin("uplink", "python"), load_twin("uplink", "cython")
    encoded = pure.encode_batch(batch)
    assert compiled.encode_batch(batch) == encoded
    assert compiled.decode_batch(encoded) == pure.decode_batch(encoded) == batch


@settings(max_examples=100, deadline=None)
@given(batches())
def test_json_form_keeps_every_reading(uplink: ModuleType, batch: Batch) -> None:
    back = uplink.batch_from_json(uplink.batch_to_json(batch))
    assert (back.gateway_id, back.sequence, back.created_at_ms) == (
        batch.gateway_id,
        batch.sequence,
        batch.created_at_ms,
    )
    for got, sent in zip(back.readings(), batch.readings(), strict=True):
        assert got[:3] == sent[:3] and got[4:] == sent[4:]
        assert got.value == sent.value or (got.value != got.value and sent.value != sent.value)


@settings(max_examples=100, deadline=None)
@given(batches(), st.data())
def test_any_single_byte_corruption_is_refused(
    uplink: ModuleType, batch: Batch, data: st.DataObject
) -> None:
    encoded = bytearray(uplink.encode_batch(batch))
    position = data.draw(st.integers(0, len(encoded) - 1))
    encoded[position] ^= data.draw(st.integers(1, 255))
    try:
        uplink.decode_batch(bytes(encoded))
    except ChecksumError:
        assert position >= 5
    except FrameError:
        assert position <= 4  # magic or version: refused before the CRC
    else:
        raise AssertionError("a corrupted batch was accepted")


@settings(max_examples=100, deadline=None)
@given(batches(), st.data())
def test_truncated_or_extended_batches_are_frame_errors(
    uplink: ModuleType, batch: Batch, data: st.DataObject
) -> None:
    encoded = uplink.encode_batch(batch)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    for payload in (encoded[:cut], encoded + data.draw(st.binary(min_size=1, max_size=8))):
        try:
            uplink.decode_batch(payload)
        except FrameError:
            pass
        else:
            raise AssertionError("a truncated or extended batch was accepted")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=120).map(lambda b: b"VSUB\x01" + b)))
def test_random_bytes_raise_only_codec_errors_and_twins_agree(payload: bytes) -> None:
    pure, compiled = load_twin("uplink", "python"), load_twin("uplink", "cython")
    assert _outcome(compiled, payload) == _outcome(pure, payload)
    sealed = _seal(payload)
    assert _outcome(compiled, sealed) == _outcome(pure, sealed)


@settings(max_examples=100, deadline=None)
@given(batches(), st.data())
def test_mutated_batches_with_a_valid_crc_raise_only_codec_errors(
    batch: Batch, data: st.DataObject
) -> None:
    # Re-sealing the CRC makes the parser itself face the damage: a hostile
    # sender can always compute a CRC.
    pure, compiled = load_twin("uplink", "python"), load_twin("uplink", "cython")
    body = bytearray(pure.encode_batch(batch)[:-4])
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(5, len(body) - 1))
        body[position] = data.draw(octet)
    if data.draw(st.booleans()):
        del body[data.draw(st.integers(6, len(body) - 1)) :]
    sealed = _seal(bytes(body))
    assert _outcome(compiled, sealed) == _outcome(pure, sealed)
