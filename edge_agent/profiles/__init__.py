"""Device profiles: one YAML file per meter model, in this folder.

`load_profile("eastron-sdm630")` returns a validated `DeviceProfile`;
`available_profiles()` lists the ids. A profile with a mistake raises
`ConfigFileError`, whose message names the file, the key and the line.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from edge_agent.profiles.schema import (
    DeviceProfile,
    IdentifyRule,
    ModbusSpec,
    Quantity,
    RegisterRange,
    RegisterSpec,
    SerialSettings,
)
from edge_agent.yamlsource import ConfigFileError, ConfigProblem, load_yaml_file

PROFILE_DIR = Path(__file__).parent

__all__ = [
    "PROFILE_DIR",
    "ConfigFileError",
    "DeviceProfile",
    "IdentifyRule",
    "ModbusSpec",
    "Quantity",
    "RegisterRange",
    "RegisterSpec",
    "SerialSettings",
    "available_profiles",
    "load_profile",
    "load_profile_file",
]


def available_profiles() -> list[str]:
    """The ids of the profiles shipped with the agent."""
    return sorted(path.stem for path in PROFILE_DIR.glob("*.yaml"))


def load_profile_file(path: Path) -> DeviceProfile:
    """Load and validate one profile file (the shipped ones or a site's own).

    Raises:
        ConfigFileError: unreadable, not YAML, or not a valid profile; the id
            must also match the file name.
    """
    profile = load_yaml_file(DeviceProfile, path)
    if profile.id != path.stem:
        raise ConfigFileError(
            [ConfigProblem(str(path), 1, "id", f"id {profile.id!r} must match the file name")]
        )
    return profile


@cache
def load_profile(profile_id: str) -> DeviceProfile:
    """The shipped profile with this id.

    Raises:
        KeyError: no such profile.
        ConfigFileError: the shipped file is invalid (a bug: tests load all).
    """
    path = PROFILE_DIR / f"{profile_id}.yaml"
    if not path.is_file():
        raise KeyError(
            f"no device profile {profile_id!r}; known: {', '.join(available_profiles())}"
        )
    return load_profile_file(path)
