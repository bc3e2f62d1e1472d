"""Remote commands on a running `voltstack-agent run`, through a real Mosquitto.

`reread_profile`, `clock_check` and `clock_sync` against simulated DLMS
meters (their clocks follow real time here, so offsets are the agent's own
measure), and `apply_config`: a valid config applied atomically with the
previous file kept, and the refusals — an invalid config (the key named), a
changed identity, and a config whose workers cannot start (rolled back) —
after each of which the agent still reads its meters with the old config.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulators.clock import SimClock
from simulators.runtime import BackgroundLoop
from tests.integration.edge_agent.test_agent_dlms import (
    GATEWAY,
    Meters,
    Subscriber,
    agent_config_dict,
    profile_readings,
    profile_truth,
    stop_agent,
    write_config,
)
from tests.integration.edge_agent.test_agent_service import start_agent
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration


@pytest.fixture
def meters() -> Iterator[Meters]:
    with BackgroundLoop() as loop:
        running = Meters(loop, SimClock())  # real time: the agent's clock is the reference
        yield running
        running.stop()


@pytest.fixture
def running(
    meters: Meters, mosquitto: MosquittoServer, tmp_path: Path
) -> Iterator[tuple[Subscriber, dict[str, Any], Path]]:
    config = agent_config_dict(meters, mosquitto, tmp_path)
    path = write_config(config, tmp_path)
    subscriber = Subscriber(mosquitto, GATEWAY)
    agent = start_agent(path)
    try:
        subscriber.wait_event(lambda e: e["event"] == "gateway_started", 30)
        yield subscriber, config, path
        assert agent.poll() is None, "the agent stopped"
    finally:
        stop_agent(agent)
        subscriber.close()


def readings_from(subscriber: Subscriber, serial: str, seconds: float = 30) -> bool:
    """Do fresh readings of this meter arrive (within `seconds`)?"""
    subscriber.got = set()
    subscriber.collect_until(lambda got: any(r[0] == serial for r in got), seconds)
    return any(r[0] == serial for r in subscriber.got)


def test_reread_profile_buffers_the_range_again(
    meters: Meters, running: tuple[Subscriber, dict[str, Any], Path]
) -> None:
    subscriber, _, _ = running
    meter = meters.tcp[1].meter
    now = time.time()
    start_s, end_s = now - 6 * 3600, now - 3 * 3600
    truth = profile_truth(meter, start_s, end_s)
    subscriber.collect_until(lambda got: profile_readings(got, meter.serial) >= truth, 60)
    subscriber.got = set()  # what comes from here on was read again
    result = subscriber.command(
        GATEWAY,
        {
            "action": "reread_profile",
            "meter": meter.serial,
            "from": dt.datetime.fromtimestamp(start_s, dt.UTC).isoformat(),
            "to": dt.datetime.fromtimestamp(end_s, dt.UTC).isoformat(),
        },
    )
    assert result["ok"] is True, result
    assert result["intervals"] == len(truth) // 2 == 12 and result["readings"] == len(truth)
    subscriber.collect_until(lambda got: profile_readings(got, meter.serial) >= truth, 60)
    assert truth <= profile_readings(subscriber.got, meter.serial)

    bad = subscriber.command(
        GATEWAY, {"action": "reread_profile", "meter": meter.serial, "from": "yesterday"}
    )
    assert bad["ok"] is False and "from" in bad["error"]


def test_clock_check_and_sync(
    meters: Meters, running: tuple[Subscriber, dict[str, Any], Path]
) -> None:
    subscriber, _, _ = running
    meter = meters.tcp[0].meter
    meter.clock_offset_s = 120.0  # the meter's clock is two minutes fast
    check = subscriber.command(GATEWAY, {"action": "clock_check", "meter": meter.serial})
    assert check["ok"] is True and abs(check["offset_s"] - 120) < 5, check

    sync = subscriber.command(
        GATEWAY, {"action": "clock_sync", "meter": meter.serial, "threshold_s": 10}
    )
    assert sync["ok"] is True and sync["synced"] is True, sync
    assert abs(sync["offset_s"] - 120) < 5 and abs(sync["offset_after_s"]) < 5
    # The meter's own clock was set (its attribute 2), not just our estimate.
    assert abs(meter.meter_time(meters.clock.now()) - meters.clock.now()) < 5

    again = subscriber.command(
        GATEWAY, {"action": "clock_sync", "meter": meter.serial, "threshold_s": 10}
    )
    assert again["ok"] is True and again["synced"] is False

    # The HDLC meters behind the shared line answer too.
    hdlc = next(iter(meters.hdlc.meters.values()))
    check = subscriber.command(GATEWAY, {"action": "clock_check", "meter": hdlc.serial})
    assert check["ok"] is True and abs(check["offset_s"]) < 5

    mode_c = subscriber.command(
        GATEWAY, {"action": "clock_check", "meter": meters.mode_c.meter.serial}
    )
    assert mode_c["ok"] is False and "not read over DLMS" in mode_c["error"]
    unknown = subscriber.command(GATEWAY, {"action": "clock_check", "meter": "nope"})
    assert unknown["ok"] is False and "no meter nope" in unknown["error"]


def test_apply_config_valid_invalid_identity_and_rollback(
    meters: Meters, running: tuple[Subscriber, dict[str, Any], Path]
) -> None:
    subscriber, config, path = running
    original = path.read_text()
    optical_c = meters.mode_c.meter.serial
    assert readings_from(subscriber, optical_c)

    # 1. Invalid: the key is named, nothing written, the old config still read.
    invalid = copy.deepcopy(config)
    invalid["buses"][0]["meters"][0]["interval_s"] = 0
    result = subscriber.command(GATEWAY, {"action": "apply_config", "config": invalid})
    assert result["ok"] is False, result
    # (yamlsource keeps the bus's link tag in the path: buses[0].dlms-tcp.meters[0]…)
    [problem] = result["problems"]
    assert problem["key"].startswith("buses[0].") and problem["key"].endswith(
        "meters[0].interval_s"
    )
    assert problem["line"] and problem["key"] in result["error"]
    assert path.read_text() == original
    assert readings_from(subscriber, optical_c)

    # 2. The gateway's identity and credentials may not change this way.
    renamed = copy.deepcopy(config)
    renamed["uplink"]["username"] = "someone-else"
    result = subscriber.command(GATEWAY, {"action": "apply_config", "config": renamed})
    assert result["ok"] is False and "uplink" in result["error"]
    assert path.read_text() == original

    # 3. Valid but cannot start (a credential file that is not there): rolled back.
    broken = copy.deepcopy(config)
    broken["buses"][0]["meters"][0].pop("password")
    broken["buses"][0]["meters"][0]["password_file"] = str(path.parent / "missing-secret")
    result = subscriber.command(
        GATEWAY, {"action": "apply_config", "config": yaml.safe_dump(broken)}
    )
    assert result["ok"] is False and result["rolled_back"] is True, result
    assert "missing-secret" in result["error"]
    assert path.read_text() == original
    assert readings_from(subscriber, optical_c)

    # 4. Valid: without the mode C probe. Written atomically, the old kept.
    smaller = copy.deepcopy(config)
    smaller["buses"] = [bus for bus in config["buses"] if bus["name"] != "probe-c"]
    text = yaml.safe_dump(smaller, sort_keys=False)
    result = subscriber.command(GATEWAY, {"action": "apply_config", "config": text})
    assert result == {"action": "apply_config", "ok": True, "buses": 4, "meters": 5}, result
    assert path.read_text() == text
    assert path.with_name("agent.yaml.previous").read_text() == original
    status = subscriber.command(GATEWAY, {"action": "status"})["status"]
    assert {m["serial"] for m in status["meters"]} == set(meters.profiled)
    assert readings_from(subscriber, meters.mode_e.meter.serial)
    assert not readings_from(subscriber, optical_c, seconds=3)


def test_only_the_management_client_may_set_a_meter_clock(meters: Meters) -> None:
    from edge_agent.adapters.dlms_reader import DlmsMeterReader, session_for
    from firmware_bridge.exceptions import DataAccessError
    from firmware_bridge.links import TcpLink

    server = meters.tcp[0]
    link = TcpLink(server.host, server.port)
    try:
        reader = DlmsMeterReader(server.meter.serial)
        with (
            session_for(link, interface="wrapper", client_address=16) as session,
            pytest.raises(DataAccessError) as refused,
        ):
            reader.set_clock(session, dt.datetime.now(dt.UTC))
        assert refused.value.result == 3  # read-write-denied
        assert server.meter.clock_offset_s == 0.0
    finally:
        link.close()
