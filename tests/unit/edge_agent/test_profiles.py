"""Device profiles load, and a broken one names its file, key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.profiles import (
    ConfigFileError,
    DeviceProfile,
    available_profiles,
    load_profile,
    load_profile_file,
)

GOOD = """\
id: test-meter
manufacturer: Test
model: T1
protocol: modbus
phases: 1
source: a test
modbus:
  readable:
    - {table: input, first: 0, last: 9}
quantities:
  - key: voltage_v
    obis: "1-0:32.7.0"
    unit: V
    kind: instantaneous
    register: {table: input, address: 0, type: float32}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "test-meter.yaml"
    path.write_text(text)
    return path


def test_every_shipped_profile_loads() -> None:
    assert {"eastron-sdm630", "eastron-sdm120", "carlo-gavazzi-em24"} <= set(available_profiles())
    for profile_id in available_profiles():
        profile = load_profile(profile_id)
        assert isinstance(profile, DeviceProfile)
        assert all(q.unit is not None and q.obis for q in profile.quantities)


def test_a_good_profile_loads(tmp_path: Path) -> None:
    profile = load_profile_file(write(tmp_path, GOOD))
    assert profile.quantity("1-0:32.7.0").key == "voltage_v"


def test_a_wrong_type_names_file_key_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("type: float32", "type: float33"))
    with pytest.raises(ConfigFileError) as error:
        load_profile_file(path)
    message = str(error.value)
    assert f"{path}:15" in message
    assert "quantities[0].register.type" in message


def test_an_unknown_key_is_refused_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    unit: V\n", "    unit: V\n    units: V\n"))
    with pytest.raises(ConfigFileError) as error:
        load_profile_file(path)
    assert f"{path}:14: quantities[0].units" in str(error.value)


def test_a_missing_key_points_at_its_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    kind: instantaneous\n", ""))
    with pytest.raises(ConfigFileError) as error:
        load_profile_file(path)
    assert "quantities[0].kind: Field required" in str(error.value)


def test_broken_yaml_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("phases: 1", "phases: [1"))
    with pytest.raises(ConfigFileError) as error:
        load_profile_file(path)
    assert "not valid YAML" in str(error.value) and f"{path}:" in str(error.value)


def test_a_malformed_obis_code_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"A-B:C\.D\.E"):
        load_profile_file(write(tmp_path, GOOD.replace('"1-0:32.7.0"', '"32.7.0"')))


def test_overlapping_registers_are_refused(tmp_path: Path) -> None:
    second = GOOD.split("quantities:\n")[1].replace("voltage_v", "other_v")
    second = second.replace('"1-0:32.7.0"', '"1-0:52.7.0"').replace("address: 0", "address: 1")
    with pytest.raises(ConfigFileError, match="overlap at input register 0x0001"):
        load_profile_file(write(tmp_path, GOOD + second))


def test_registers_outside_the_readable_map_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="outside every `readable` range"):
        load_profile_file(write(tmp_path, GOOD.replace("address: 0,", "address: 9,")))


def test_id_must_match_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "other-name.yaml"
    path.write_text(GOOD)
    with pytest.raises(ConfigFileError, match="must match the file name"):
        load_profile_file(path)


def test_unknown_profile_id_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="eastron-sdm630"):
        load_profile("no-such-meter")
