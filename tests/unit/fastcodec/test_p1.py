"""P1 telegrams (DSMR 2.2..5.0.2, e-MUCS, mode-D readouts) against real telegrams."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import ModuleType

import pytest

from fastcodec.exceptions import EncodeError, FrameError
from tests.conftest import VECTORS

P1_VECTORS = VECTORS / "p1_dsmr_iec62056-21"
INDEX = json.loads((P1_VECTORS / "INDEX.json").read_text())
AMSHAN = {
    v["name"]: bytes.fromhex(v["hex"])
    for v in json.loads((P1_VECTORS / "amshan_test_dlde.json").read_text())["vectors"]
}
CET = timezone(timedelta(hours=1))
CEST = timezone(timedelta(hours=2))


def telegram_bytes(name: str) -> bytes:
    # The .txt files hold the telegrams byte for byte, CR LF line ends included.
    return (P1_VECTORS / name).read_bytes()


def reading(telegram: object, obis: str) -> object:
    found = telegram.get(obis)  # type: ignore[attr-defined]
    assert found is not None, obis
    return found


@pytest.mark.parametrize("entry", INDEX["telegrams"], ids=lambda entry: entry["file"])
def test_every_indexed_telegram_parses_and_checks(p1: ModuleType, entry: dict[str, str]) -> None:
    # DSMR 5.0.2 §6.2: CRC-16/ARC over '/' .. '!' inclusive; DSMR 2.2/3 has none.
    telegram = p1.parse_telegram(telegram_bytes(entry["file"]))
    assert "/" + telegram.identification.text == entry["ident"]
    if entry["status"] == "crc-ok":
        assert telegram.checksum_ok is True
        assert telegram.checksum == int(entry["checksum"], 16)
    else:
        assert telegram.checksum_ok is None
        assert telegram.checksum is None
    assert telegram.readings


def test_dsmr5_iskra_mt382(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(telegram_bytes("telegram_v5.txt"))
    ident = telegram.identification
    assert (ident.manufacturer, ident.baud_char, ident.enhanced, ident.ident) == (
        "ISk",
        "5",
        "2",
        "MT382-1000",
    )
    assert ident.supports_20ms and ident.hdlc_mode_e and ident.baud_rate == 9600
    assert telegram.timestamp == datetime(2017, 1, 2, 19, 20, 2, tzinfo=CET)
    version = reading(telegram, "1-3:0.2.8")
    assert version.value == 50.0
    expected = {
        "1-0:1.8.1": (4.426, "kWh"),
        "1-0:1.8.2": (2.399, "kWh"),
        "1-0:2.8.1": (2.444, "kWh"),
        "1-0:2.8.2": (0.0, "kWh"),
        "1-0:1.7.0": (0.244, "kW"),
        "1-0:32.7.0": (230.0, "V"),
        "1-0:72.7.0": (229.0, "V"),
        "1-0:31.7.0": (0.48, "A"),
        "1-0:21.7.0": (0.070, "kW"),
        "0-0:96.7.21": (13.0, ""),
        "0-0:96.14.0": (2.0, ""),
    }
    for obis, (value, unit) in expected.items():
        found = reading(telegram, obis)
        assert (found.value, found.unit) == (value, unit), obis
    equipment = reading(telegram, "0-0:96.1.1")
    assert equipment.value == "4B384547303034303436333935353037"
    gas = reading(telegram, "0-1:24.2.1")
    assert (gas.value, gas.unit, gas.channel) == (0.107, "m3", 1)
    assert gas.timestamp == datetime(2017, 1, 2, 16, 10, 5, tzinfo=CET)
    failures = reading(telegram, "1-0:99.97.0")
    assert failures.value == 0.0 and failures.entries == ()
    assert reading(telegram, "0-2:96.1.0").value == ""
    assert telegram.text_message == ""


def test_dsmr42_kaifa_power_failure_log(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(telegram_bytes("telegram_v4_2.txt"))
    failures = reading(telegram, "1-0:99.97.0")
    assert failures.value == 3.0
    assert [(e.timestamps, e.value, e.unit) for e in failures.entries] == [
        ((datetime(2000, 1, 4, 18, 3, 20, tzinfo=CET),), 237126.0, "s"),
        ((datetime(2000, 1, 1, 0, 0, 1, tzinfo=CET),), 2147583646.0, "s"),
        ((datetime(2000, 1, 2, 0, 0, 3, tzinfo=CET),), 2317482647.0, "s"),
    ]
    assert failures.raw[1] == ("0-0:96.7.19", "")
    gas = reading(telegram, "0-1:24.2.1")
    assert (gas.value, gas.unit) == (981.443, "m3")
    assert gas.timestamp == datetime(2016, 11, 29, 20, 0, 0, tzinfo=CET)
    assert reading(telegram, "1-0:1.8.1").value == 1581.123
    assert reading(telegram, "1-0:51.7.0").value == 6.0


def test_dsmr5_two_mbus_devices(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(telegram_bytes("telegram_v5_two_mbus.txt"))
    first = reading(telegram, "0-1:24.2.1")
    # An M-Bus slot with no device yet: 1970 placeholder, a value without unit.
    assert (first.value, first.unit) == (0.0, "")
    assert first.timestamp == datetime(1970, 1, 1, 1, 0, tzinfo=CET)
    second = reading(telegram, "0-2:24.2.1")
    assert (second.value, second.unit, second.channel) == (246.138, "m3", 2)
    assert second.timestamp == datetime(2020, 4, 26, 22, 30, 1, tzinfo=CEST)
    failures = reading(telegram, "1-0:99.97.0")
    assert failures.value == 1.0
    assert failures.entries[0].timestamps == (datetime(2019, 3, 26, 9, 50, 15, tzinfo=CET),)
    assert (failures.entries[0].value, failures.entries[0].unit) == (2014.0, "s")
    assert reading(telegram, "1-0:1.8.1").value == 2130.115
    assert reading(telegram, "1-0:72.32.0").value == 192.0


def test_fluvius_emucs_peaks_and_gas(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(telegram_bytes("telegram_fluvius_v171.txt"))
    assert telegram.timestamp == datetime(2020, 5, 12, 13, 54, 9, tzinfo=CEST)
    peak = reading(telegram, "1-0:1.6.0")
    assert (peak.value, peak.unit) == (2.589, "kW")
    assert peak.timestamp == datetime(2020, 5, 9, 13, 45, 58, tzinfo=CEST)
    monthly = reading(telegram, "0-0:98.1.0")
    assert monthly.value == 3.0
    # The S/W letters as the meter wrote them (it marks 1 March as summer time).
    assert [(e.timestamps, e.value, e.unit) for e in monthly.entries] == [
        (
            (datetime(2020, 5, 1, tzinfo=CEST), datetime(2020, 4, 23, 19, 25, 38, tzinfo=CEST)),
            3.695,
            "kW",
        ),
        (
            (datetime(2020, 4, 1, tzinfo=CEST), datetime(2020, 3, 5, 12, 21, 39, tzinfo=CEST)),
            5.98,
            "kW",
        ),
        (
            (datetime(2020, 3, 1, tzinfo=CEST), datetime(2020, 2, 10, 3, 54, 21, tzinfo=CET)),
            4.318,
            "kW",
        ),
    ]
    gas = reading(telegram, "0-1:24.2.3")
    assert (gas.value, gas.unit) == (112.384, "m3")
    water = reading(telegram, "0-2:24.2.1")
    assert (water.value, water.unit, water.channel) == (872.234, "m3", 2)
    assert reading(telegram, "1-0:1.4.0").value == 2.351
    assert reading(telegram, "1-0:31.4.0").value == 999.0
    assert reading(telegram, "0-0:96.1.4").value == "50217"  # a version, kept as text


def test_fluvius_alt_keeps_an_invalid_peak_time_as_none(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(telegram_bytes("telegram_fluvius_v171_alt.txt"))
    monthly = reading(telegram, "0-0:98.1.0")
    assert monthly.value == 4.0 and len(monthly.entries) == 4
    # "632525252525W": the meter's placeholder for "no peak yet".
    assert monthly.entries[0].timestamps == (datetime(2023, 8, 1, tzinfo=CEST), None)
    assert monthly.entries[3].value == 4.927
    assert reading(telegram, "1-0:1.8.1").value == 301.548


def test_warmtelink_three_digit_crc(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(telegram_bytes("telegram_unpadded_crc.txt"))
    assert telegram.checksum == 0x0B9F and telegram.checksum_ok is True
    assert telegram.identification.baud_char == "-"
    assert telegram.identification.mode == "A"
    heat = reading(telegram, "0-1:24.2.1")
    assert (heat.value, heat.unit) == (240.86, "GJ")
    assert heat.timestamp == datetime(2026, 2, 15, 20, 5, 23, tzinfo=CET)


def test_easymeter_trailer_and_padding(p1: ModuleType) -> None:
    first = p1.parse_telegram(telegram_bytes("telegram_esy5q3da1004_v304.txt"))
    assert first.checksum_ok is None
    assert first.trailer == b"  25818685\r\nDE0000000000000000000000000000003\r\n"
    assert (reading(first, "1-0:1.8.0").value, reading(first, "1-0:1.8.0").unit) == (
        32549.5061662,
        "kWh",
    )
    assert reading(first, "1-0:1.7.0").value == 1688.21
    assert reading(first, "0-0:96.1.255").value == "1ESY1336001560"
    assert reading(first, "1-0:0.0.0").value == "1336001560"
    assert reading(first, "1-0:96.5.5").value == 80.0
    second = p1.parse_telegram(telegram_bytes("telegram_esy5q3db1024_v304.txt"))
    assert second.trailer.endswith(b"\xff" * 33 + b"\r\n")
    assert reading(second, "1-0:2.8.0").value == 19949.3221493


def test_sagemcom_t210_in_wh(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(telegram_bytes("telegram_sagemcom_t210_d_r.txt"))
    assert telegram.identification.ident == "53710000_A"
    assert (reading(telegram, "1-0:1.8.0").value, reading(telegram, "1-0:1.8.0").unit) == (
        6545766.0,
        "Wh",
    )
    assert reading(telegram, "1-0:1.7.0").value == 286.0
    assert reading(telegram, "1-0:4.8.0").unit == "varh"
    assert reading(telegram, "1-0:4.7.0").value == 166.0


def test_iskra_ie_control_byte_in_identification(p1: ModuleType) -> None:
    # The vector has 0x02 where the meter sends "\2", and its CRC covers 0x02.
    telegram = p1.parse_telegram(telegram_bytes("telegram_iskra_ie.txt"))
    assert telegram.checksum_ok is True
    assert telegram.identification.enhanced == ""
    assert telegram.identification.ident == "\x02MIE5T-200"
    assert reading(telegram, "1-0:32.7.0").value == 242.5
    assert reading(telegram, "1-0:2.8.2").value == 10.282
    assert reading(telegram, "1-0:31.7.0").value == 0.0
    assert reading(telegram, "0-1:96.1.1").value == ""


def test_eon_hungary_monthly_profile(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(telegram_bytes("telegram_v5_eon_hu.txt"))
    profile = reading(telegram, "0-0:98.1.0")
    assert profile.timestamp == datetime(2023, 7, 1, tzinfo=CEST)
    assert (profile.value, profile.unit) == (40.777, "kWh")
    assert len(profile.raw) == 20 and profile.raw[-1] == ("03.400", "kW")
    assert reading(telegram, "1-0:14.7.0").value == 50.0
    assert reading(telegram, "1-0:14.7.0").unit == "Hz"
    assert (reading(telegram, "1-0:13.7.0").value, reading(telegram, "1-0:13.7.0").unit) == (
        4.556,
        "",
    )
    assert reading(telegram, "1-0:3.8.0").unit == "kvarh"
    assert reading(telegram, "0-0:42.0.0").value == "53414733303832323030303032313630"


def test_dsmr22_gas_value_on_the_next_line(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(telegram_bytes("telegram_v2_2.txt"))
    gas = reading(telegram, "0-1:24.3.0")
    assert (gas.value, gas.unit, gas.channel) == (1.001, "m3", 1)
    # DSMR 2.2/3 timestamps carry no S/W: local time, returned naive.
    assert gas.timestamp == datetime(2016, 11, 7, 19, 0)
    assert reading(telegram, "0-0:96.1.1").value == "00000000000000"  # an id stays text
    assert reading(telegram, "1-0:1.7.0").value == 1.01


def test_dsmr3_text_message_is_hex(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(telegram_bytes("telegram_v3.txt"))
    assert telegram.text_message is not None
    assert telegram.text_message.startswith("0123456789:;<=>?0123456789")
    assert reading(telegram, "0-0:17.0.0").unit == "A"


def test_amshan_landis_gyr_e360_without_final_crlf(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(AMSHAN["EXAMPLE_DATA_A_LANDISGYR_360"])
    assert telegram.checksum == 0xA077 and telegram.checksum_ok is True
    assert telegram.timestamp == datetime(2021, 2, 22, 16, 19, tzinfo=CET)
    assert (reading(telegram, "1-0:1.8.0").value, reading(telegram, "1-0:1.8.0").unit) == (
        896.02,
        "kWh",
    )
    assert reading(telegram, "1-0:3.8.0").unit == "kVArh"
    assert reading(telegram, "1-0:4.7.0").value == 0.308
    other = p1.parse_telegram(AMSHAN["EXAMPLE_DATA_D_LANDISGYR_360"])
    assert other.checksum_ok is True
    assert reading(other, "1-0:1.8.0").value == 10501.076


def test_amshan_xmx5_without_crc(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(AMSHAN["EXAMPLE_DATA_B"])
    assert telegram.checksum_ok is None
    assert telegram.identification.ident == "LGBBFFB231314239"
    gas = reading(telegram, "0-1:24.2.1")
    assert (gas.value, gas.unit) == (4890.857, "m3")
    assert gas.timestamp == datetime(2018, 9, 24, 13, 0, tzinfo=CEST)
    failures = reading(telegram, "1-0:99.97.0")
    # The meter counts 5 failures and logs the last 2.
    assert failures.value == 5.0 and len(failures.entries) == 2
    assert failures.entries[1].value == 43178677.0


def test_amshan_elster_ell5_and_short_readout(p1: ModuleType) -> None:
    telegram = p1.parse_telegram(AMSHAN["EXAMPLE_DATA_C"])
    assert telegram.checksum_ok is True
    assert telegram.identification.manufacturer == "ELL"
    assert reading(telegram, "1-0:31.7.0").value == 13.6
    assert reading(telegram, "1-0:1.8.0").value == 1605.055
    short = p1.parse_telegram(AMSHAN["readout_data"])
    assert short.checksum_ok is None
    assert [r.obis for r in short.readings] == ["0-0:1.0.0", "1-0:41.7.0"]
    assert reading(short, "1-0:41.7.0").value == 0.35


def test_corrupted_telegram_reports_a_bad_crc(p1: ModuleType) -> None:
    raw = bytearray(telegram_bytes("telegram_v5.txt"))
    position = raw.index(b"000004.426")
    raw[position] = ord("1")
    telegram = p1.parse_telegram(bytes(raw))
    assert telegram.checksum_ok is False
    assert reading(telegram, "1-0:1.8.1").value == 100004.426


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "does not start with '/'"),
        (b"XISk5MT382\r\n\r\n!\r\n", "does not start with '/'"),
        (b"/ISk5MT382", "without CR LF"),
        (b"/ISk5MT382\r\n\r\n1-0:1.8.1(1*kWh)\r\n", "'!'"),
        (b"/IS5\r\n\r\n!\r\n", "shorter"),
        (b"/1Sk5MT\r\n\r\n!\r\n", "three letters"),
        (b"/ISk5MT\r\n\r\n1-0:1.8.1(1*kWh\r\n!\r\n", "value without"),
        (b"/ISk5MT\r\n\r\n1-0:1.8.1\r\n!\r\n", "without a value"),
    ],
)
def test_malformed_telegrams_raise_frame_error(p1: ModuleType, data: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        p1.parse_telegram(data)


def test_parse_refuses_text(p1: ModuleType) -> None:
    with pytest.raises(TypeError):
        p1.parse_telegram("/ISk5MT382\r\n\r\n!\r\n")


def test_build_telegram_round_trip(p1: ModuleType) -> None:
    lines = [
        "0-0:1.0.0(170102192002W)",
        "1-0:1.8.1(000004.426*kWh)",
        "0-1:24.2.1(170102161005W)(00000.107*m3)",
    ]
    raw = p1.build_telegram("ISk5\\2MT382-1000", lines)
    assert raw.startswith(b"/ISk5\\2MT382-1000\r\n\r\n0-0:1.0.0") and raw.endswith(b"\r\n")
    telegram = p1.parse_telegram(raw)
    assert telegram.checksum_ok is True and telegram.trailer == b""
    assert reading(telegram, "0-1:24.2.1").value == 0.107
    unchecked = p1.parse_telegram(p1.build_telegram("ISk5MT382", lines, False))
    assert unchecked.checksum_ok is None


def test_build_telegram_reproduces_a_real_telegram(p1: ModuleType) -> None:
    raw = telegram_bytes("telegram_v5.txt")
    text = raw.decode("ascii").split("\r\n")
    assert p1.build_telegram(text[0][1:], text[2:-2]) == raw


@pytest.mark.parametrize("line", ["1-0:1.8.1(1!)", "a/b(1)", "1-0:1.8.1(é)", "x\r\n(1)"])
def test_build_telegram_refuses_what_cannot_be_sent(p1: ModuleType, line: str) -> None:
    with pytest.raises(EncodeError):
        p1.build_telegram("ISk5MT382", [line])


def _all_vectors() -> list[bytes]:
    telegrams = [telegram_bytes(entry["file"]) for entry in INDEX["telegrams"]]
    return telegrams + list(AMSHAN.values())


def test_splitter_finds_every_telegram_in_a_noisy_stream(p1: ModuleType) -> None:
    telegrams = _all_vectors()
    stream = b"\x00\xffnoise".join(telegrams) + b"tail"
    splitter = p1.TelegramSplitter()
    found = splitter.feed(stream)
    # EXAMPLE_DATA_A ends "!A077" without CR LF: it ends where the next begins.
    assert len(found) == len(telegrams)
    for raw, expected in zip(found, telegrams, strict=True):
        telegram = p1.parse_telegram(raw)
        assert telegram == p1.parse_telegram(expected) or telegram.trailer == b""
        assert telegram.checksum_ok in (True, None)
    assert splitter.dropped_telegrams == 0
    assert splitter.buffered_bytes == 0


def test_splitter_byte_at_a_time(p1: ModuleType) -> None:
    stream = b"xx" + telegram_bytes("telegram_v5.txt") + telegram_bytes("telegram_unpadded_crc.txt")
    whole = p1.TelegramSplitter()
    expected = whole.feed(stream)
    splitter = p1.TelegramSplitter()
    found = []
    for index in range(len(stream)):
        found += splitter.feed(stream[index : index + 1])
    assert found == expected and len(found) == 2
    assert splitter.skipped_bytes == whole.skipped_bytes == 2


def test_splitter_skips_the_easymeter_trailer(p1: ModuleType) -> None:
    raw = telegram_bytes("telegram_esy5q3db1024_v304.txt")
    splitter = p1.TelegramSplitter()
    found = splitter.feed(raw + raw)
    assert [p1.parse_telegram(t).trailer for t in found] == [b"", b""]
    trailer_length = len(raw) - raw.index(b"!\r\n") - 3
    # Both trailers are garbage between telegrams: skipped and counted.
    assert splitter.skipped_bytes == 2 * trailer_length
    assert splitter.buffered_bytes == 0


def test_splitter_drops_a_telegram_cut_short_by_a_restart(p1: ModuleType) -> None:
    raw = telegram_bytes("telegram_v5.txt")
    splitter = p1.TelegramSplitter()
    assert splitter.feed(raw[:300] + raw) == [raw]
    assert splitter.dropped_telegrams == 1 and splitter.skipped_bytes == 300


def test_splitter_bounds_its_buffer(p1: ModuleType) -> None:
    splitter = p1.TelegramSplitter(max_telegram_bytes=64)
    assert splitter.feed(b"/" + b"A" * 1000) == []
    assert splitter.buffered_bytes == 0 and splitter.dropped_telegrams == 1
    small = p1.build_telegram("ABC5X", ["1-0:1.8.0(1*kWh)"])
    assert splitter.feed(small) == [small]
    with pytest.raises(ValueError):
        p1.TelegramSplitter(max_telegram_bytes=2)


def test_splitter_waits_for_the_end_line(p1: ModuleType) -> None:
    splitter = p1.TelegramSplitter()
    raw = telegram_bytes("telegram_v5.txt")
    assert splitter.feed(raw[:-3]) == []  # "!6EEE" without CR LF: more digits may come
    assert splitter.feed(raw[-3:]) == [raw]


def test_selector_exposes_the_api() -> None:
    from fastcodec import _p1_py, p1

    assert p1.IMPLEMENTATION in ("cython", "python")
    for name in _p1_py.__all__:
        assert hasattr(p1, name), name


def test_compiled_twin_has_the_whole_api(p1: ModuleType) -> None:
    from fastcodec import _p1_py

    missing = [name for name in _p1_py.__all__ if not hasattr(p1, name)]
    assert missing == []
