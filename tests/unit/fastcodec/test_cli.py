"""`python -m fastcodec decode`: JSON for technicians, trustworthy exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fastcodec import uplink
from fastcodec.obis import parse_obis
from tests.conftest import VECTORS


def decode(fmt: str, source: str) -> tuple[int, Any, str]:
    result = subprocess.run(
        [sys.executable, "-m", "fastcodec", "decode", "--format", fmt, source],
        capture_output=True,
        text=True,
        timeout=60,
    )
    parsed = json.loads(result.stdout) if result.returncode == 0 else None
    return result.returncode, parsed, result.stderr


def test_p1_telegram_readings_with_checksum() -> None:
    code, out, _ = decode("p1", f"@{VECTORS / 'p1_dsmr_iec62056-21' / 'telegram_v5.txt'}")
    assert code == 0 and out["checksum_ok"] is True
    tariff_1 = next(r for r in out["readings"] if r["obis"] == "1-0:1.8.1")
    assert tariff_1["unit"] == "kWh" and isinstance(tariff_1["value"], float)


def test_mode_c_readout_with_bcc(tmp_path: Path) -> None:
    body = b"1.8.0(0012345.6*kWh)\r\n32.7.0(230.1*V)\r\n!\r\n\x03"
    bcc = 0
    for byte in body:
        bcc ^= byte
    code, out, _ = decode("iec62056-21", (b"\x02" + body + bytes([bcc])).hex())
    assert code == 0 and out["checksum_ok"] is True
    assert out["readings"] == [
        {"obis": "1-0:1.8.0", "value": 12345.6, "unit": "kWh"},
        {"obis": "1-0:32.7.0", "value": 230.1, "unit": "V"},
    ]


def test_modbus_reply_registers() -> None:
    code, out, _ = decode("modbus-rtu", "01 04 04 43 66 33 34 1b 38")  # Eastron doc: 230.2 V
    assert code == 0
    assert (out["unit_id"], out["function"], out["registers"]) == (1, 4, [0x4366, 0x3334])


def test_hdlc_frame_fields() -> None:
    frames = json.loads((VECTORS / "dlms" / "curated_real_hdlc_frames.json").read_text())["frames"]
    snrm = next(f for f in frames if f["id"].startswith("snrm"))
    code, out, _ = decode("hdlc", snrm["hex"])
    assert code == 0 and out["kind"] == "SNRM" and out["segmented"] is False
    assert out["source_address"] == 16


def test_dlms_apdu_data_tree() -> None:
    code, out, _ = decode("dlms-apdu", "c401c1000600000e10")  # GET response: u32 3600
    assert code == 0 and out["apdu"]["data"] == 3600


def test_uplink_batch() -> None:
    reading = uplink.Reading(
        "SDM630-1", parse_obis("1-0:1.8.0"), 1_700_000_000_000, 1234.5, "kWh", 8
    )
    batch = uplink.Batch.from_readings("gw-1", 7, 1_700_000_000_500, [reading])
    code, out, _ = decode("uplink", uplink.encode_batch(batch).hex())
    assert code == 0
    assert json.loads(uplink.batch_to_json(batch)) == out


@pytest.mark.parametrize(
    ("fmt", "source"),
    [
        ("modbus-rtu", "0104044366333400"),
        ("hdlc", "7e00"),
        ("p1", "2f"),
        ("uplink", "00ff"),
        ("dlms-apdu", "ff"),
        ("iec62056-21", "02"),
    ],
)
def test_invalid_frames_exit_1_with_one_line(fmt: str, source: str) -> None:
    code, _, stderr = decode(fmt, source)
    assert code == 1
    assert stderr.count("\n") == 1 and stderr.startswith(f"error: not a valid {fmt} frame")


def test_unreadable_input_exits_2() -> None:
    code, _, stderr = decode("hdlc", "not hex")
    assert code == 2 and "cannot read the input" in stderr
