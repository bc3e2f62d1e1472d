"""OBIS codes (IEC 62056-61): text forms, the 6-byte logical name, real vectors."""

from __future__ import annotations

import json
import re
from types import ModuleType

import pytest

from fastcodec._obis_types import Obis
from fastcodec.exceptions import EncodeError, FrameError
from tests.conftest import VECTORS

ENERGY_IMPORT = Obis(1, 0, 1, 8, 0, 255)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # IEC 62056-61 §4: A-B:C.D.E*F, F = 255 when not used.
        ("1-0:1.8.0", ENERGY_IMPORT),
        ("1-0:1.8.0*255", ENERGY_IMPORT),
        ("1-0:1.8.0.255", ENERGY_IMPORT),
        ("1-0:1.8.0&255", ENERGY_IMPORT),
        ("1-0:1.8.0*101", Obis(1, 0, 1, 8, 0, 101)),
        ("1-0:32.7.0", Obis(1, 0, 32, 7, 0, 255)),
        ("0-1:24.2.1", Obis(0, 1, 24, 2, 1, 255)),
        ("001-000:001.008.000", ENERGY_IMPORT),
        # A-B missing: the caller's default (1-0).
        ("1.8.0", ENERGY_IMPORT),
        ("1.8.1*3", Obis(1, 0, 1, 8, 1, 3)),
        ("1.8", ENERGY_IMPORT),
        # The dotted logical-name form of DLMS tools.
        ("1.0.1.8.0.255", ENERGY_IMPORT),
        ("0.0.96.1.0.255", Obis(0, 0, 96, 1, 0, 255)),
        # 12 hex digits: the 6-byte logical name.
        ("0100010800FF", ENERGY_IMPORT),
        ("0100010800ff", ENERGY_IMPORT),
        # Letter groups C = 96, F = 97, L = 98, P = 99 (IEC 62056-61 §5.5).
        ("0-0:C.1.0", Obis(0, 0, 96, 1, 0, 255)),
        ("0-0:F.F", Obis(0, 0, 97, 97, 0, 255)),
        ("1-0:P.1.0", Obis(1, 0, 99, 1, 0, 255)),
        ("1-0:L.2.0", Obis(1, 0, 98, 2, 0, 255)),
        ("0-0:96.1.1", Obis(0, 0, 96, 1, 1, 255)),  # DSMR equipment identifier
    ],
)
def test_parse_obis_accepts_the_common_text_forms(
    obis: ModuleType, text: str, expected: Obis
) -> None:
    assert obis.parse_obis(text) == expected


def test_missing_a_b_come_from_the_caller(obis: ModuleType) -> None:
    assert obis.parse_obis("96.1.0", default_a=0, default_b=0) == Obis(0, 0, 96, 1, 0)
    assert obis.parse_obis("F.F", default_a=0, default_b=0) == Obis(0, 0, 97, 97, 0)
    # An explicit A-B wins over the defaults.
    assert obis.parse_obis("1-1:1.8.0", default_a=0, default_b=0) == Obis(1, 1, 1, 8, 0)


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("", 0),
        ("x", 0),
        ("1-0:1.8.0*", 10),
        ("1-0:1.8", 7),  # A-B:C.D is accepted, so this one is complete ...
        ("1-0:", 4),
        ("1-0:1.1000.0", 9),
        ("1-0:256.8.0", 4),
        ("1-0:1,8.0", 5),
        ("1-0:1.8.0 ", 9),
        ("C-0:1.8.0", 0),
        ("1-0:1.8.F", 8),
        ("1-0-1.8.0", 3),
        ("1.8.0.255", 9),  # ambiguous: is the first group A or C?
        ("1.0.1.8.0", 9),
        ("1.0.1.8.0.255.1", 13),
        ("1-0:1.8.0*255*1", 13),
        ("1-0:1.8.0" + "0" * 60, 64),  # longer than MAX_TEXT_CHARS
        ("c.1.0", 0),
    ],
)
def test_invalid_text_is_a_frame_error_naming_the_position(
    obis: ModuleType, text: str, offset: int
) -> None:
    if text == "1-0:1.8":
        assert obis.parse_obis(text) == Obis(1, 0, 1, 8, 0)
        return
    with pytest.raises(FrameError) as caught:
        obis.parse_obis(text)
    assert caught.value.offset == offset, caught.value


def test_parse_obis_refuses_non_text(obis: ModuleType) -> None:
    with pytest.raises(TypeError):
        obis.parse_obis(b"1-0:1.8.0")


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (ENERGY_IMPORT, "1-0:1.8.0"),
        (Obis(1, 0, 1, 8, 0, 101), "1-0:1.8.0*101"),
        (Obis(0, 0, 96, 1, 0, 255), "0-0:96.1.0"),
        ((0, 0, 0, 0, 0, 0), "0-0:0.0.0*0"),
    ],
)
def test_format_obis_writes_the_canonical_form(obis: ModuleType, code: Obis, text: str) -> None:
    assert obis.format_obis(code) == text
    assert obis.parse_obis(text) == tuple(code)
    if isinstance(code, Obis):
        assert str(code) == text


@pytest.mark.parametrize("code", [(1, 0, 1, 8, 0), (1, 0, 1, 8, 0, 256), (1, 0, -1, 8, 0, 255)])
def test_format_and_bytes_refuse_codes_that_are_not_six_octets(
    obis: ModuleType, code: tuple[int, ...]
) -> None:
    with pytest.raises(EncodeError):
        obis.format_obis(code)
    with pytest.raises(EncodeError):
        obis.obis_to_bytes(code)


def test_six_byte_logical_name_round_trip(obis: ModuleType) -> None:
    # DLMS logical_name: octet-string(6) A B C D E F (IEC 62056-62 §4.1.2).
    assert obis.obis_to_bytes(ENERGY_IMPORT) == bytes.fromhex("0100010800FF")
    assert obis.obis_from_bytes(bytes.fromhex("0100010800FF")) == ENERGY_IMPORT
    assert obis.obis_from_bytes(bytearray(b"\x00\x00\x60\x01\x00\xff")) == Obis(0, 0, 96, 1, 0)


@pytest.mark.parametrize("length", [0, 5, 7])
def test_logical_name_of_the_wrong_length_is_a_frame_error(obis: ModuleType, length: int) -> None:
    with pytest.raises(FrameError):
        obis.obis_from_bytes(bytes(length))


def test_well_known_codes_have_names_and_units(obis: ModuleType) -> None:
    info = obis.describe_obis(ENERGY_IMPORT)
    assert info is not None and info.unit == "kWh" and "import" in info.name
    assert obis.describe_obis(Obis(1, 0, 32, 7, 0)).unit == "V"  # voltage L1
    assert obis.describe_obis(Obis(1, 0, 71, 7, 0)).unit == "A"  # current L3
    assert obis.describe_obis(Obis(1, 0, 1, 8, 2)).name == "Active energy import, tariff 2"
    assert obis.describe_obis(Obis(1, 0, 99, 1, 0)).name == "Load profile 1"
    assert obis.describe_obis(Obis(1, 0, 200, 0, 0)) is None
    assert obis.describe_obis((1, 2, 3)) is None


def _p1_obis_texts() -> list[str]:
    texts = set()
    for telegram in sorted((VECTORS / "p1_dsmr_iec62056-21").glob("*.txt")):
        for line in telegram.read_text(errors="replace").splitlines():
            match = re.match(r"^(\d+-\d+:\d+\.\d+\.\d+)\(", line)
            if match:
                texts.add(match.group(1))
    return sorted(texts)


def test_p1_vectors_hold_obis_codes() -> None:
    assert len(_p1_obis_texts()) > 40


@pytest.mark.parametrize("text", _p1_obis_texts())
def test_every_obis_code_in_the_p1_telegrams_parses_and_formats_back(
    obis: ModuleType, text: str
) -> None:
    # DSMR P1 / IEC 62056-21 data lines start with A-B:C.D.E (F left out).
    code = obis.parse_obis(text)
    assert obis.format_obis(code) == text
    assert code.f == 255


def test_logical_names_in_real_dlms_get_requests(obis: ModuleType) -> None:
    # IEC 62056-53 GET-Request-Normal: C0 01 invoke-id, class-id (2 bytes),
    # logical name (6 bytes), attribute id.
    session = json.loads((VECTORS / "dlms" / "synthetic_gurux_loopback_session.json").read_text())
    frames = {frame["step"]: bytes.fromhex(frame["hex"]) for frame in session["frames"]}
    get_register = frames["GET-1.8.0-req"]
    apdu = get_register[get_register.index(b"\xc0\x01") :]
    assert obis.obis_from_bytes(apdu[5:11]) == ENERGY_IMPORT
    get_profile = frames["GET-PG-attr3-req"]
    apdu = get_profile[get_profile.index(b"\xc0\x01") :]
    assert obis.format_obis(obis.obis_from_bytes(apdu[5:11])) == "1-0:99.1.0"

    cosem = json.loads(
        (VECTORS / "dlms" / "dlms-cosem__tests_test_xdlms_test_get.json").read_text()
    )
    request = bytes.fromhex(cosem["vectors"][1]["hex"])  # c001c1 0001 00002b0100ff 02 00
    assert obis.format_obis(obis.obis_from_bytes(request[5:11])) == "0-0:43.1.0"
