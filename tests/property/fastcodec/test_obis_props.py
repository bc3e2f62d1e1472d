"""Property tests: the OBIS twins agree on any text, and text and bytes round-trip."""

from __future__ import annotations

from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from fastcodec._obis_types import Obis
from fastcodec.exceptions import CodecError
from tests.conftest import load_twin

octet = st.integers(0, 255)
codes = st.builds(Obis, octet, octet, octet, octet, octet, octet)
obis_like_text = st.text(alphabet="0123456789-:.*&CFLPcx9 ", max_size=24)
any_text = st.one_of(obis_like_text, st.text(max_size=80))


def _outcome(module: ModuleType, text: str) -> object:
    try:
        return module.parse_obis(text)
    except CodecError as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "offset", None))


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_compiled_and_pure_twins_agree_on_any_text(text: str) -> None:
    pure, compiled = load_twin("obis", "python"), load_twin("obis", "cython")
    assert _outcome(compiled, text) == _outcome(pure, text)


@settings(max_examples=300, deadline=None)
@given(codes)
def test_canonical_text_round_trips(obis: ModuleType, code: Obis) -> None:
    text = obis.format_obis(code)
    assert obis.parse_obis(text) == code
    assert obis.parse_obis(text, default_a=7, default_b=9) == code


@settings(max_examples=300, deadline=None)
@given(codes)
def test_logical_name_bytes_and_hex_round_trip(obis: ModuleType, code: Obis) -> None:
    raw = obis.obis_to_bytes(code)
    assert len(raw) == 6
    assert obis.obis_from_bytes(raw) == code
    assert obis.parse_obis(raw.hex()) == code
    assert obis.parse_obis(".".join(str(group) for group in code)) == code


@settings(max_examples=300, deadline=None)
@given(obis_like_text)
def test_whatever_parses_formats_to_a_stable_canonical_form(obis: ModuleType, text: str) -> None:
    try:
        code = obis.parse_obis(text)
    except CodecError:
        return
    canonical = obis.format_obis(code)
    assert obis.format_obis(obis.parse_obis(canonical)) == canonical
