"""The remote commands that touch meters or the configuration (docs/agent.md, Commands).

The agent's command loop (the pump thread) answers `read_now`, `status` and
`restart` itself; the actions here take longer, so they never run there:

- `reread_profile`, `clock_check`, `clock_sync` need the meter's line, which
  belongs to its bus worker (one transaction at a time): they are queued as a
  job on that worker and answer from it when done;
- `apply_config` stops and starts the bus workers: it runs in a thread of
  its own, one at a time.

Each answers through `CommandHost.complete_command` → `cmd_result/{id}`.
Arguments are checked before anything is queued: a bad one is answered at
once with `ok: false` and the reason.

Before any of this, `parse_command` turns the message into a command or a
clear refusal (too big, not JSON, not an object, no action), and the agent
records the command id in its buffer: an id seen before is never run again,
and a command that was running when the agent died is answered with
`INTERRUPTED` after the restart, not run again (docs/agent.md, "Commands
survive a crash").
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from edge_agent.config import AgentConfig
from edge_agent.yamlsource import ConfigFileError, validate_yaml
from firmware_bridge.exceptions import LinkError

if TYPE_CHECKING:
    from edge_agent.adapters.dlms_reader import DlmsSession
    from edge_agent.service.dlms_tasks import DlmsTask

log = logging.getLogger(__name__)

__all__ = [
    "INTERRUPTED",
    "MAX_COMMAND_BYTES",
    "MAX_COMMAND_ID_CHARS",
    "METER_ACTIONS",
    "CommandHost",
    "apply_config",
    "command_id_problem",
    "meter_command",
    "parse_command",
]

METER_ACTIONS = frozenset({"reread_profile", "clock_check", "clock_sync"})
# A whole agent config for a few hundred meters is tens of kB; a megabyte is
# far beyond any real command and still cheap to refuse.
MAX_COMMAND_BYTES = 1024 * 1024
# The id becomes a topic level and the buffer's key: short, as the cloud makes them.
MAX_COMMAND_ID_CHARS = 128
# The answer to a command that was running when the agent died. Not run again:
# it may have been done in part (a clock SET sent, a config file written),
# and running it once more blindly could be worse than not at all.
INTERRUPTED = (
    "interrupted by agent restart: the agent stopped while this command ran, or its "
    "answer could not be stored; it may have been done in part and was not run again "
    "(check with clock_check or status, then send a new command)"
)
NOT_STARTED = "not run: the agent stopped before it started; send it again (a new id)"
DEFAULT_SYNC_THRESHOLD_S = 10.0
MAX_REREAD = dt.timedelta(days=400)
Result = dict[str, Any]


class CommandHost(Protocol):
    """What the commands need of the agent."""

    config: AgentConfig
    # The agent's time: real time, or the simulated meters' time under `simulation:`.
    clock: Callable[[], float]

    def find_dlms_task(
        self, serial: str
    ) -> tuple[Callable[[Callable[[], None], Callable[[str], None]], None], Any]:
        """(submit(job, cancel) on the meter's bus thread, its task); KeyError when unknown."""
        ...

    def complete_command(self, command_id: str, result: Result) -> None:
        """Commit the answer to the buffer, sent on cmd_result/{id} (from any thread)."""
        ...

    def apply_new_config(self, config: AgentConfig, text: str) -> Result:
        """Write the file atomically and restart the bus workers; roll back on failure."""
        ...


# --- the message -------------------------------------------------------------------------


def command_id_problem(command_id: str) -> str:
    """Why a command id is refused ("" when it is fine)."""
    if not command_id:
        return "bad command: empty command id"
    if len(command_id) > MAX_COMMAND_ID_CHARS:
        return f"bad command: the id has more than {MAX_COMMAND_ID_CHARS} characters"
    return ""


def parse_command(payload: bytes) -> tuple[dict[str, Any] | None, str]:
    """The command in a `cmd/{id}` message, or why it is refused.

    Returns:
        (the command, "") or (None, the reason, starting "bad command:").
    """
    if len(payload) > MAX_COMMAND_BYTES:
        return None, (
            f"bad command: {len(payload)} bytes, more than the {MAX_COMMAND_BYTES} "
            "a command may have"
        )
    try:  # UTF-8 only (RFC 8259 §8.1): json.loads would guess UTF-16 from a BOM
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None, "bad command: not UTF-8 text"
    try:
        command = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, f"bad command: not JSON ({exc})"
    if not isinstance(command, dict):
        return None, f"bad command: a JSON object is needed, not {type(command).__name__}"
    action = command.get("action")
    if not isinstance(action, str) or not action:
        return None, "bad command: 'action' (a string) is required"
    return command, ""


# --- meter commands ---------------------------------------------------------------------


def _moment(command: dict[str, Any], key: str) -> dt.datetime:
    value = command.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be an ISO 8601 date-time with its offset")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{key!r}: {value!r} is not an ISO 8601 date-time") from None
    if moment.utcoffset() is None:
        raise ValueError(f"{key!r} needs an offset (e.g. 2026-01-01T00:00:00Z)")
    return moment


def _range(command: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    start, end = _moment(command, "from"), _moment(command, "to")
    if end < start:
        raise ValueError("'to' is before 'from'")
    if end - start > MAX_REREAD:
        raise ValueError(f"at most {MAX_REREAD.days} days per reread_profile")
    return start, end


def _threshold(command: dict[str, Any]) -> float:
    threshold = command.get("threshold_s", DEFAULT_SYNC_THRESHOLD_S)
    if not isinstance(threshold, int | float) or isinstance(threshold, bool) or threshold < 0:
        raise ValueError("'threshold_s' must be a number of seconds >= 0")
    return float(threshold)


def _clock_offset(
    task: DlmsTask, session: DlmsSession, clock: Callable[[], float]
) -> tuple[dt.datetime, float]:
    """The meter's clock and its offset from ours (meter − agent, seconds)."""
    before = clock()
    meter_time = task.reader.read_clock(session)
    after = clock()
    return meter_time, meter_time.timestamp() - (before + after) / 2


def _reread(task: DlmsTask, start: dt.datetime, end: dt.datetime) -> Callable[..., Result]:
    def work(session: DlmsSession) -> Result:
        intervals, readings = task.reread_profile(session, start, end)
        return {"intervals": intervals, "readings": readings}

    return work


def _clock_check(task: DlmsTask, clock: Callable[[], float]) -> Callable[..., Result]:
    def work(session: DlmsSession) -> Result:
        meter_time, offset = _clock_offset(task, session, clock)
        return {"meter_time": meter_time.isoformat(), "offset_s": round(offset, 3)}

    return work


def _clock_sync(
    task: DlmsTask, threshold_s: float, clock: Callable[[], float]
) -> Callable[..., Result]:
    def work(session: DlmsSession) -> Result:
        meter_time, offset = _clock_offset(task, session, clock)
        result: Result = {
            "meter_time": meter_time.isoformat(),
            "offset_s": round(offset, 3),
            "threshold_s": threshold_s,
            "synced": False,
        }
        if abs(offset) > threshold_s:
            task.reader.set_clock(session, dt.datetime.fromtimestamp(clock(), dt.UTC))
            _, after = _clock_offset(task, session, clock)
            log.warning("meter %s: clock set (was %+.1f s off)", task.serial, offset)
            result.update(synced=True, offset_after_s=round(after, 3))
        return result

    return work


def meter_command(host: CommandHost, command_id: str, command: dict[str, Any]) -> Result | None:
    """Queue a meter command on its bus worker; None when queued, else the answer now.

    Raises:
        ValueError, KeyError, TypeError: a bad argument (answered as a bad command).
    """
    action = command["action"]
    serial = command.get("meter")
    if not isinstance(serial, str):
        raise ValueError("'meter' (a serial) is required")
    try:
        submit, task = host.find_dlms_task(serial)
    except KeyError as exc:
        return {"ok": False, "action": action, "meter": serial, "error": str(exc.args[0])}
    if action == "reread_profile":
        work = _reread(task, *_range(command))
    elif action == "clock_check":
        work = _clock_check(task, host.clock)
    else:
        work = _clock_sync(task, _threshold(command), host.clock)

    def job() -> None:
        answer: Result = {"ok": True, "action": action, "meter": serial}
        try:
            answer |= task.with_session(work)
        except (LinkError, RuntimeError, ValueError) as exc:
            answer |= {"ok": False, "error": str(exc)}
        host.complete_command(command_id, answer)

    def cancel(reason: str) -> None:
        host.complete_command(
            command_id, {"ok": False, "action": action, "meter": serial, "error": reason}
        )

    submit(job, cancel)
    return None


# --- apply_config ------------------------------------------------------------------------

_apply_lock = threading.Lock()
_FIXED_SECTIONS = ("gateway", "uplink")  # the identity: provisioned with the broker
_RESTART_SECTIONS = ("buffer", "health")  # opened once at start


def _config_text(payload: object) -> str:
    if isinstance(payload, str):
        return payload  # YAML, or JSON (a subset of YAML)
    if isinstance(payload, dict):
        return yaml.safe_dump(json.loads(json.dumps(payload)), sort_keys=False)
    raise ValueError("'config' must be the configuration (YAML text or a JSON object)")


def apply_config(host: CommandHost, command_id: str, command: dict[str, Any]) -> Result | None:
    """Validate a whole new configuration, then apply it in a thread (None: answered later)."""
    action = "apply_config"
    text = _config_text(command.get("config"))
    try:
        new = validate_yaml(AgentConfig, text, "apply_config")
    except ConfigFileError as exc:
        log.warning("apply_config refused, invalid:\n%s", exc)
        return {
            "ok": False,
            "action": action,
            "error": f"invalid configuration, not applied: {exc}",
            "problems": [
                {"key": p.key, "line": p.line, "message": p.message} for p in exc.problems
            ],
        }
    changed = [name for name in _FIXED_SECTIONS if getattr(new, name) != getattr(host.config, name)]
    if changed:
        return {
            "ok": False,
            "action": action,
            "error": f"apply_config may not change {' or '.join(changed)} (the gateway's "
            "identity and broker credentials): not applied",
        }
    pending = [
        name for name in _RESTART_SECTIONS if getattr(new, name) != getattr(host.config, name)
    ]

    def run() -> None:
        with _apply_lock:
            answer = host.apply_new_config(new, text)
        if answer.get("ok") and pending:
            answer["applies_at_restart"] = pending
        host.complete_command(command_id, {"action": action, **answer})

    threading.Thread(target=run, name="apply-config", daemon=True).start()
    return None
