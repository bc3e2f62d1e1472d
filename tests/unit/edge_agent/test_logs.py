"""Daemon logging: `<N>` priorities for journald, timestamps elsewhere, one line per event."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Iterator

import pytest

from edge_agent.logs import configure_logging, stderr_is_journal

PLAIN = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (?P<level>[A-Z]+) (?P<name>[\w.]+): (?P<msg>.*)$"
)
log = logging.getLogger("edge_agent.test")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def journal_stream_of_stderr() -> str:
    stat = os.fstat(sys.stderr.fileno())
    return f"{stat.st_dev}:{stat.st_ino}"


def stderr_lines(capfd: pytest.CaptureFixture[str]) -> list[str]:
    return capfd.readouterr().err.splitlines()


def test_plain_format_outside_the_journal(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    configure_logging(False)
    log.debug("hidden")
    log.info("read %d meters", 12)
    log.warning("meter %s lost", "M7")
    lines = stderr_lines(capfd)
    assert len(lines) == 2
    first, second = (PLAIN.match(line) for line in lines)
    assert first and second
    assert (first["level"], first["name"], first["msg"]) == (
        "INFO",
        "edge_agent.test",
        "read 12 meters",
    )
    assert (second["level"], second["msg"]) == ("WARNING", "meter M7 lost")


def test_verbose_shows_debug(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    configure_logging(True)
    log.debug("frame 01 03 00 00")
    (line,) = stderr_lines(capfd)
    match = PLAIN.match(line)
    assert match and match["level"] == "DEBUG"


def test_journal_format_when_stderr_is_the_journal(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of_stderr())
    configure_logging(True)
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert stderr_lines(capfd) == [
        "<7>edge_agent.test: d",
        "<6>edge_agent.test: i",
        "<4>edge_agent.test: w",
        "<3>edge_agent.test: e",
        "<2>edge_agent.test: c",
    ]


def test_a_traceback_is_one_journal_line_with_its_priority(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of_stderr())
    configure_logging(False)
    try:
        raise ValueError("bad frame\nsecond line")
    except ValueError:
        log.exception("poll cycle failed")
    (line,) = stderr_lines(capfd)
    assert line.startswith("<3>edge_agent.test: poll cycle failed\\nTraceback (most recent")
    assert line.endswith("ValueError: bad frame\\nsecond line")


def test_a_multi_line_message_is_one_plain_line(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    configure_logging(False)
    log.info("a\nb")
    (line,) = stderr_lines(capfd)
    assert line.endswith("edge_agent.test: a\\nb")


def test_an_inherited_journal_stream_is_not_trusted(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set, but naming another stream (a child of the service with stderr redirected).
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    configure_logging(False)
    log.info("plain")
    (line,) = stderr_lines(capfd)
    assert PLAIN.match(line)


def test_stderr_is_journal_rules() -> None:
    without_fd = io.StringIO()
    assert not stderr_is_journal(without_fd, {})
    assert not stderr_is_journal(without_fd, {"JOURNAL_STREAM": "garbage"})
    # No descriptor to compare: trust the variable.
    assert stderr_is_journal(without_fd, {"JOURNAL_STREAM": "8:1234"})


def test_an_explicit_stream_and_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = io.StringIO()
    configure_logging(False, stream=out, environ={"JOURNAL_STREAM": "8:1234"})
    log.warning("to the journal")
    assert out.getvalue() == "<4>edge_agent.test: to the journal\n"


def test_configuring_twice_does_not_double_lines(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    configure_logging(False)
    configure_logging(True)
    log.info("once")
    assert len(stderr_lines(capfd)) == 1
    assert logging.getLogger().level == logging.DEBUG
