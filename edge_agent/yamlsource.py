"""YAML files validated by pydantic, with errors that name the file, key and line.

A technician who mistypes a key in a profile or an agent config must read
`sdm630.yaml:42: quantities[3].type: Input should be 'float32', 'int32', …`,
not a traceback. PyYAML's node tree knows the line of every key; we keep a map
from each key path to its line while turning nodes into plain Python values,
and look the paths of pydantic's errors up in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a YAML file."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key or '(top level)'}: {self.message}"


class ConfigFileError(Exception):
    """A YAML file that cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


def _to_python(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _to_python(value_node, (*path, key), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, index), lines) for index, item in enumerate(node.value)]
    # Scalars: let the safe constructor resolve ints, hex ints, floats, bools.
    return yaml.safe_load(yaml.serialize(node))


def load_yaml_with_lines(text: str, file: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML text; return the value and the line of every key path.

    Raises:
        ConfigFileError: the text is not YAML.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigFileError(
            [ConfigProblem(file, line, "", f"not valid YAML: {problem}")]
        ) from exc
    lines: dict[KeyPath, int] = {}
    if node is None:
        return None, lines
    return _to_python(node, (), lines), lines


def _line_of(path: KeyPath, lines: dict[KeyPath, int]) -> int | None:
    # The deepest part of the path that exists in the file: a missing key is
    # reported at the line of the mapping that should hold it.
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _key_text(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validate_yaml(model: type[ModelT], text: str, file: str) -> ModelT:
    """Parse and validate YAML text against a pydantic model.

    Raises:
        ConfigFileError: with one problem per invalid key, each naming its line.
    """
    data, lines = load_yaml_with_lines(text, file)
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            # pydantic adds the name of a union member or a function validator
            # to `loc`; keep only the parts that are keys of the file.
            path = tuple(part for part in error["loc"] if isinstance(part, int | str))
            problems.append(
                ConfigProblem(file, _line_of(path, lines), _key_text(path), error["msg"])
            )
        raise ConfigFileError(problems) from exc


def load_yaml_file(model: type[ModelT], path: Path) -> ModelT:
    """Read, parse and validate a YAML file.

    Raises:
        ConfigFileError: the file cannot be read, or is not valid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError([ConfigProblem(str(path), None, "", f"cannot read: {exc}")]) from exc
    return validate_yaml(model, text, str(path))
