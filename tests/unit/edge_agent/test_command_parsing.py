"""What a `cmd/{id}` message may be: every refusal says why (the agent answers
it on `cmd_result/{id}` and counts it; tests/integration/edge_agent/
test_command_durability.py sends these to the running agent)."""

from __future__ import annotations

import json

import pytest

from edge_agent.service.commands import (
    MAX_COMMAND_BYTES,
    MAX_COMMAND_ID_CHARS,
    command_id_problem,
    parse_command,
)


def test_a_command_is_a_json_object_with_an_action() -> None:
    command = {"action": "clock_sync", "meter": "M1", "threshold_s": 10}
    assert parse_command(json.dumps(command).encode()) == (command, "")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"", "not JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[" * 100_000, "not JSON"),  # nesting deep enough to exhaust the recursion
        (b'["status"]', "a JSON object is needed, not list"),
        (b"42", "a JSON object is needed, not int"),
        (b"{}", "'action' (a string) is required"),
        (b'{"action": 7}', "'action' (a string) is required"),
        (b'{"action": ""}', "'action' (a string) is required"),
    ],
)
def test_a_bad_message_is_refused_with_its_reason(payload: bytes, reason: str) -> None:
    command, problem = parse_command(payload)
    assert command is None
    assert problem.startswith("bad command: ") and reason in problem


def test_a_huge_message_is_refused_before_it_is_parsed() -> None:
    payload = json.dumps({"action": "apply_config", "config": "x" * MAX_COMMAND_BYTES}).encode()
    command, problem = parse_command(payload)
    assert command is None
    assert f"{len(payload)} bytes, more than the {MAX_COMMAND_BYTES}" in problem


def test_command_ids() -> None:
    assert command_id_problem("a1b2c3") == ""
    assert command_id_problem("x" * MAX_COMMAND_ID_CHARS) == ""
    assert "empty" in command_id_problem("")
    assert "more than" in command_id_problem("x" * (MAX_COMMAND_ID_CHARS + 1))
