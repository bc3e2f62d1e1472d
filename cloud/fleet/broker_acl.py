"""The broker's view of the fleet: Mosquitto password and ACL files.

Every registered gateway gets its own broker account; the ACL confines it to
its own prefix: it may publish anything under `vs/v1/{gateway}/` and read only
its commands (`vs/v1/{gateway}/cmd/#`). Cloud service accounts (ingestion
workers) read every gateway's readings, events and status (shared
subscriptions check the topic part), write commands and the cloud's own
events. Decommissioned gateways are left out, so their credentials stop
working at the next reload.

The password file holds the `$7$` hashes the operational database keeps (no
plain password is ever needed); the files are written atomically with mode
0600 and Mosquitto rereads them on SIGHUP (`voltstack-cloud broker-acl
--reload-pid`). Mosquitto's dynamic-security plugin is the alternative for
brokers managed over MQTT: docs/broker-provisioning.md shows the mapping.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.fleet.models import Gateway

__all__ = [
    "ServiceAccount",
    "gateway_acl",
    "render_acl_file",
    "render_password_file",
    "write_broker_files",
]


@dataclass(frozen=True)
class ServiceAccount:
    """A cloud process's broker account (an ingestion worker)."""

    username: str
    password_hash: str  # `$7$`, e.g. from cloud.fleet.service.hash_broker_password


def gateway_acl(gateway_id: str) -> list[str]:
    """The ACL lines that confine one gateway to its prefix."""
    prefix = f"vs/v1/{gateway_id}"
    return [f"topic write {prefix}/#", f"topic read {prefix}/cmd/#"]


SERVICE_ACL = [
    "topic read vs/v1/+/readings",
    "topic read vs/v1/+/events",
    "topic read vs/v1/+/status",
    "topic read vs/v1/+/cmd_result/#",
    "topic write vs/v1/+/cmd/#",
    "topic write vs/v1/+/config",
    "topic readwrite vs/v1/_cloud/#",
]


def active_gateways(session: Session) -> list[Gateway]:
    statement = select(Gateway).where(Gateway.decommissioned_at.is_(None)).order_by(Gateway.id)
    return list(session.scalars(statement))


def render_password_file(gateways: Iterable[Gateway], services: Sequence[ServiceAccount]) -> str:
    lines = [f"{g.broker_username}:{g.broker_password_hash}" for g in gateways]
    lines += [f"{s.username}:{s.password_hash}" for s in services]
    return "".join(f"{line}\n" for line in lines)


def render_acl_file(gateways: Iterable[Gateway], services: Sequence[ServiceAccount]) -> str:
    blocks = ["# Written by voltstack-cloud broker-acl: do not edit by hand.\n"]
    for gateway in gateways:
        rules = "".join(f"{rule}\n" for rule in gateway_acl(gateway.id))
        blocks.append(f"user {gateway.broker_username}\n{rules}")
    for service in services:
        rules = "".join(f"{rule}\n" for rule in SERVICE_ACL)
        blocks.append(f"user {service.username}\n{rules}")
    return "\n".join(blocks)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_broker_files(
    *,
    session: Session,
    password_file: Path,
    acl_file: Path,
    services: Sequence[ServiceAccount] = (),
) -> int:
    """Write both files for the active gateways; return how many gateways."""
    gateways = active_gateways(session)
    _write_atomically(password_file, render_password_file(gateways, services))
    _write_atomically(acl_file, render_acl_file(gateways, services))
    return len(gateways)
