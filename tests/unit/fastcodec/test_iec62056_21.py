"""IEC 62056-21 optical port messages: sign-on, mode C readout, programming mode."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from fastcodec.exceptions import ChecksumError, EncodeError, FrameError
from tests.conftest import VECTORS

BCC_VECTORS = json.loads((VECTORS / "iec62056-21_modeC" / "bcc_vectors_pwitab.json").read_text())

# A mode C readout as an electricity meter sends it (§6.3.4): data sets with
# and without units, several values on a line, letter codes (F.F error
# register, C.1.0 serial number), a billing-period value, a profile line
# continued on the next line, and a full OBIS address.
READOUT_LINES = [
    "0.0.0(12345678)",
    "F.F(00000000)",
    "C.1.0(87654321)",
    "0.9.1(143012)",
    "0.9.2(230512)",
    "1.8.0(0012345.678*kWh)",
    "1.8.0*12(0011000.000*kWh)",
    "1.6.0(02.345*kW)(23-05-01 12:15)",
    "32.7.0(231.4*V)31.7.0(001.25*A)",
    "P.01(2305120000)(00)(15)(1)(1.5)(kW)",
    "(0.412)",
    "1-0:2.8.0*255(0000000.000*kWh)",
]


def test_bcc_vectors_parse_as_command_messages(iec62056_21: ModuleType) -> None:
    # IEC 62056-21:2002 §6.3.7: SOH C D STX data ETX BCC, BCC over 'C' .. ETX.
    first, second = (bytes.fromhex(vector["hex"]) for vector in BCC_VECTORS["vectors"])
    assert iec62056_21.parse_message(first) == iec62056_21.CommandMessage(
        "W2", "C003(910324092239)"
    )
    assert iec62056_21.parse_message(second) == iec62056_21.CommandMessage("P0", "(1234567)")
    assert iec62056_21.build_command("W2", "C003(910324092239)") == first
    assert iec62056_21.build_command("P0", "(1234567)") == second


def test_bad_bcc_raises_checksum_error(iec62056_21: ModuleType) -> None:
    message = bytearray.fromhex(BCC_VECTORS["vectors"][1]["hex"])
    message[-1] ^= 0x01
    with pytest.raises(ChecksumError) as caught:
        iec62056_21.parse_message(bytes(message))
    assert (caught.value.expected, caught.value.received) == (0x50, 0x51)
    assert caught.value.offset == len(message) - 1


def test_request_message(iec62056_21: ModuleType) -> None:
    # §6.3.1: / ? device address ! CR LF; no address asks any meter.
    assert iec62056_21.build_request() == b"/?!\r\n"
    assert iec62056_21.build_request("12345678") == b"/?12345678!\r\n"
    assert iec62056_21.parse_message(b"/?12345678!\r\n") == iec62056_21.SignOnRequest("12345678")
    assert iec62056_21.parse_message(b"/?!\r\n") == iec62056_21.SignOnRequest("")
    with pytest.raises(EncodeError):
        iec62056_21.build_request("1" * 33)
    with pytest.raises(EncodeError):
        iec62056_21.build_request("12!")
    with pytest.raises(FrameError):
        iec62056_21.parse_message(b"/?12#!\r\n")


def test_identification_mode_c_with_mode_e_marker(iec62056_21: ModuleType) -> None:
    # §6.3.2: / X X X Z \W ident CR LF (the P1 header of an Iskra MT382).
    ident = iec62056_21.parse_identification(b"/ISk5\\2MT382-1000\r\n")
    assert ident == iec62056_21.Identification("ISk", "5", "MT382-1000", "2")
    assert ident.supports_20ms and ident.hdlc_mode_e
    assert (ident.mode, ident.baud_rate) == ("C", 9600)
    assert ident.text == "ISk5\\2MT382-1000"
    assert iec62056_21.parse_message(b"/ISk5\\2MT382-1000\r\n") == ident


@pytest.mark.parametrize(
    ("line", "mode", "baud_rate", "fast"),
    [
        (b"/LGZ4ZMD3104100\r\n", "C", 4800, False),
        (b"/ABC6X\r\n", "C", 19200, False),
        (b"/ELSD\\1\\2A1500\r\n", "B", 4800, False),
        (b"/KAMI\r\n", "B", None, False),
        (b"/NWA-WARMTELINK\r\n", "A", 300, False),
        (b"/xyz9Q\r\n", "C", None, True),
    ],
)
def test_identification_baud_characters(
    iec62056_21: ModuleType, line: bytes, mode: str, baud_rate: int | None, fast: bool
) -> None:
    # §6.3.14: Z = '0'..'6' mode C, 'A'..'F' mode B, anything else mode A.
    ident = iec62056_21.parse_identification(line)
    assert (ident.mode, ident.baud_rate, ident.supports_20ms) == (mode, baud_rate, fast)


def test_identification_keeps_several_markers(iec62056_21: ModuleType) -> None:
    ident = iec62056_21.parse_identification(b"/ELSD\\1\\2A1500\r\n")
    assert (ident.enhanced, ident.ident) == ("12", "A1500")


@pytest.mark.parametrize(
    "line",
    [b"/ISk\r\n", b"/1Sk5MT\r\n", b"/ISk5MT", b"ISk5MT\r\n", b"/ISk5M!T\r\n", b"/ISk5M\rT\r\n"],
)
def test_bad_identification_raises_frame_error(iec62056_21: ModuleType, line: bytes) -> None:
    with pytest.raises(FrameError):
        iec62056_21.parse_identification(line)


def test_build_identification_round_trip(iec62056_21: ModuleType) -> None:
    raw = iec62056_21.build_identification("ISk", "5", "MT174", enhanced="2")
    assert raw == b"/ISk5\\2MT174\r\n"
    assert iec62056_21.parse_identification(raw).ident == "MT174"
    with pytest.raises(EncodeError):
        iec62056_21.build_identification("IS", "5", "MT174")
    with pytest.raises(EncodeError):
        iec62056_21.build_identification("ISk", "5", "MT/174")


def test_option_select(iec62056_21: ModuleType) -> None:
    # §6.3.3: ACK V Z Y CR LF. "0 5 0": normal protocol, 9600 Bd, data readout.
    assert iec62056_21.build_option_select("5") == b"\x06050\r\n"
    assert iec62056_21.build_option_select("5", "1") == b"\x06051\r\n"
    assert iec62056_21.build_option_select("5", "2", "2") == b"\x06252\r\n"
    assert iec62056_21.parse_message(b"\x06051\r\n") == iec62056_21.OptionSelect("0", "5", "1")
    with pytest.raises(EncodeError):
        iec62056_21.build_option_select("55")
    with pytest.raises(FrameError):
        iec62056_21.parse_message(b"\x0605\r\n")


def test_data_readout_round_trip(iec62056_21: ModuleType) -> None:
    raw = iec62056_21.build_data_readout(READOUT_LINES)
    assert raw[0] == iec62056_21.STX and raw.endswith(b"!\r\n\x03" + raw[-1:])
    readout = iec62056_21.parse_data_readout(raw)
    assert iec62056_21.parse_message(raw) == readout
    sets = {data_set.address: data_set for data_set in readout.data_sets}
    assert list(sets) == [
        "0.0.0",
        "F.F",
        "C.1.0",
        "0.9.1",
        "0.9.2",
        "1.8.0",
        "1.8.0*12",
        "1.6.0",
        "32.7.0",
        "31.7.0",
        "P.01",
        "1-0:2.8.0*255",
    ]
    energy = sets["1.8.0"]
    assert energy.obis == "1-0:1.8.0"
    assert energy.values == (iec62056_21.DataValue("0012345.678", "kWh", 12345.678),)
    assert sets["1.8.0*12"].obis == "1-0:1.8.0*12"
    assert sets["F.F"].obis == "1-0:97.97.0"
    assert sets["C.1.0"].obis == "1-0:96.1.0"
    assert sets["1-0:2.8.0*255"].obis == "1-0:2.8.0"
    demand = sets["1.6.0"].values
    assert demand[0].number == 2.345 and demand[1] == iec62056_21.DataValue(
        "23-05-01 12:15", "", None
    )
    assert sets["31.7.0"].values[0].unit == "A"
    profile = sets["P.01"]
    assert profile.obis == "1-0:99.1.0"
    assert [value.text for value in profile.values] == [
        "2305120000",
        "00",
        "15",
        "1",
        "1.5",
        "kW",
        "0.412",
    ]


def test_known_readout_bytes(iec62056_21: ModuleType) -> None:
    # STX "1.8.0(0012345.6*kWh)" CR LF "!" CR LF ETX BCC, BCC over the block and ETX.
    raw = bytes.fromhex("02312e382e3028303031323334352e362a6b5768290d0a210d0a03")
    expected = raw + bytes([0])
    check = 0
    for byte in raw[1:]:
        check ^= byte
    expected = raw + bytes([check])
    assert iec62056_21.build_data_readout(["1.8.0(0012345.6*kWh)"]) == expected
    assert iec62056_21.parse_data_readout(expected).data_sets[0].values[0].number == 12345.6


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"\x021.8.0(1)\r\n!\r\n", FrameError),  # no ETX
        (b"\x021.8.0(1)\r\n\x03\x00", FrameError),  # no "!" CR LF
        (b"\x021.8.0(1\r\n!\r\n\x03\x00", FrameError),
        (b"\x01P1\x02(1)\x03\x00\x00", FrameError),  # a byte after the BCC
        (b"\x01X1\x02(1)\x03\x00", FrameError),  # unknown command
        (b"\x01R1(1)\x03\x00", FrameError),  # no STX
        (b"\x07", FrameError),
        (b"", FrameError),
    ],
)
def test_malformed_messages(iec62056_21: ModuleType, raw: bytes, error: type) -> None:
    with pytest.raises(error):
        iec62056_21.parse_message(raw)


def test_readout_with_a_bad_bcc(iec62056_21: ModuleType) -> None:
    raw = bytearray(iec62056_21.build_data_readout(READOUT_LINES))
    raw[5] ^= 0x01
    with pytest.raises(ChecksumError):
        iec62056_21.parse_data_readout(bytes(raw))
    with pytest.raises(FrameError):
        iec62056_21.parse_data_readout(b"\x06")


def test_programming_mode_exchange(iec62056_21: ModuleType) -> None:
    # §6.3.7 and §6.4: after ACK 0 Z 1 the meter sends P0 with its operand,
    # the client answers P1 with the password, the meter ACKs; R1 reads a
    # register, W1 writes one, an unknown register gives (ERxx), B0 ends.
    operand = iec62056_21.build_command("P0", "(12345678)")
    assert iec62056_21.parse_message(operand) == iec62056_21.CommandMessage("P0", "(12345678)")
    password = iec62056_21.build_command("P1", "(00000000)")
    assert password.startswith(b"\x01P1\x02(00000000)\x03")
    assert iec62056_21.parse_message(b"\x06") == iec62056_21.Ack()
    assert iec62056_21.parse_message(b"\x15") == iec62056_21.Nak()
    read = iec62056_21.build_command("R1", "1.8.0()")
    assert iec62056_21.parse_message(read).data == "1.8.0()"
    reply = iec62056_21.parse_message(iec62056_21.build_data_message("1.8.0(0012345.6*kWh)"))
    assert reply == iec62056_21.DataMessage("1.8.0(0012345.6*kWh)")
    (data_set,) = iec62056_21.parse_data_sets(reply.data.encode())
    assert (data_set.obis, data_set.values[0].number) == ("1-0:1.8.0", 12345.6)
    write = iec62056_21.build_command("W1", "C.1.0(87654321)")
    assert iec62056_21.parse_message(write) == iec62056_21.CommandMessage("W1", "C.1.0(87654321)")
    error = iec62056_21.parse_message(iec62056_21.build_data_message("(ER01)"))
    assert error == iec62056_21.ErrorMessage("ER01")
    addressed = iec62056_21.parse_message(iec62056_21.build_data_message("9.9.9(ER02)"))
    assert addressed == iec62056_21.ErrorMessage("ER02", "9.9.9")
    brk = iec62056_21.build_command("B0")
    assert brk == b"\x01B0\x03q"  # §6.3: the break message has no STX and no data
    assert iec62056_21.parse_message(brk) == iec62056_21.CommandMessage("B0", "")
    partial = iec62056_21.build_data_message("(0123)", partial=True)
    assert partial[-2] == iec62056_21.EOT
    assert iec62056_21.parse_message(partial) == iec62056_21.DataMessage("(0123)", True)


@pytest.mark.parametrize(
    ("command", "data"), [("X1", ""), ("R", ""), ("Rx", ""), ("R1", "a\x03b"), ("W1", "é")]
)
def test_build_command_refuses(iec62056_21: ModuleType, command: str, data: str) -> None:
    with pytest.raises(EncodeError):
        iec62056_21.build_command(command, data)


@pytest.mark.parametrize(
    ("address", "obis"),
    [
        ("1.8.0", "1-0:1.8.0"),
        ("1-0:1.8.0", "1-0:1.8.0"),
        ("1-0:1.8.0*255", "1-0:1.8.0"),
        ("1.8.0*03", "1-0:1.8.0*3"),
        ("1.8.0&04", "1-0:1.8.0*4"),
        ("0-1:24.2.1", "0-1:24.2.1"),
        ("C.1.0", "1-0:96.1.0"),
        ("F.F", "1-0:97.97.0"),
        ("P.01", "1-0:99.1.0"),
        ("1.8", "1-0:1.8.0"),
        ("1.8.0.1", None),
        ("256.8.0", None),
        ("1-0:1.8.x", None),
        ("1:1.8.0", None),
        ("", None),
        ("².8.0", None),
        ("1.8.0*", None),
    ],
)
def test_normalise_obis(iec62056_21: ModuleType, address: str, obis: str | None) -> None:
    assert iec62056_21.normalise_obis(address) == obis


def test_parse_data_sets_rules(iec62056_21: ModuleType) -> None:
    sets = iec62056_21.parse_data_sets(b"(1234567)")
    assert sets == (
        iec62056_21.DataSet("", None, (iec62056_21.DataValue("1234567", "", 1234567.0),)),
    )
    assert iec62056_21.parse_data_sets(b"") == ()
    values = iec62056_21.parse_data_sets(b"1.8.0(-1.5)(1e5)(inf)(.)(-)(1.2.3)")[0].values
    assert [value.number for value in values] == [-1.5, None, None, None, None, None]
    with pytest.raises(FrameError):
        iec62056_21.parse_data_sets(b"1.8.0")
    with pytest.raises(FrameError):
        iec62056_21.parse_data_sets(b"1.8.0(1(2)")
    with pytest.raises(TypeError):
        iec62056_21.parse_data_sets("1.8.0(1)")


def test_splitter_client_side_session(iec62056_21: ModuleType) -> None:
    # What the client reads during a mode C readout and a programming session.
    identification = b"/ISk5MT174-0001\r\n"
    readout = iec62056_21.build_data_readout(READOUT_LINES)
    operand = iec62056_21.build_command("P0", "(12345678)")
    reply = iec62056_21.build_data_message("(0012345.6*kWh)")
    stream = b"\x00\xff" + identification + readout + operand + b"\x06" + reply + b"\x15"
    splitter = iec62056_21.OpticalSplitter()
    messages = splitter.feed(stream)
    assert messages == [identification, readout, operand, b"\x06", reply, b"\x15"]
    assert splitter.skipped_bytes == 2 and splitter.dropped_frames == 0
    one_by_one = iec62056_21.OpticalSplitter()
    found = []
    for index in range(len(stream)):
        found += one_by_one.feed(stream[index : index + 1])
    assert found == messages


def test_splitter_meter_side_reads_option_select(iec62056_21: ModuleType) -> None:
    stream = b"/?!\r\n" + b"\x06051\r\n" + iec62056_21.build_command("P1", "(0000)") + b"\x06"
    splitter = iec62056_21.OpticalSplitter(meter_side=True)
    messages = splitter.feed(stream)
    assert [type(iec62056_21.parse_message(m)).__name__ for m in messages] == [
        "SignOnRequest",
        "OptionSelect",
        "CommandMessage",
    ]
    assert splitter.buffered_bytes == 1  # the last ACK waits for its V Z Y CR LF


def test_splitter_resyncs_after_a_broken_message(iec62056_21: ModuleType) -> None:
    readout = iec62056_21.build_data_readout(READOUT_LINES)
    splitter = iec62056_21.OpticalSplitter()
    assert splitter.feed(readout[:40] + readout) == [readout]
    assert splitter.dropped_frames == 1 and splitter.skipped_bytes == 40


def test_splitter_bounds_its_buffer(iec62056_21: ModuleType) -> None:
    splitter = iec62056_21.OpticalSplitter(max_frame_bytes=32)
    assert splitter.feed(b"\x02" + b"1" * 100) == []
    assert splitter.buffered_bytes == 0 and splitter.dropped_frames == 1
    assert splitter.feed(b"\x06") == [b"\x06"]
    with pytest.raises(ValueError):
        iec62056_21.OpticalSplitter(max_frame_bytes=1)


def test_selector_exposes_the_api() -> None:
    from fastcodec import _iec62056_21_py, iec62056_21

    assert iec62056_21.IMPLEMENTATION in ("cython", "python")
    for name in _iec62056_21_py.__all__:
        assert hasattr(iec62056_21, name), name


def test_compiled_twin_has_the_whole_api(iec62056_21: ModuleType) -> None:
    from fastcodec import _iec62056_21_py

    assert [name for name in _iec62056_21_py.__all__ if not hasattr(iec62056_21, name)] == []
