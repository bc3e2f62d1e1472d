"""The ingestion worker's group bookkeeping on SQLite and PostgreSQL.

`advance_sequences` and `count_ingestions` book a whole group of batches in
one statement each; they must give exactly what `advance_sequence` and
`count_ingestion` give one batch at a time, and stay exact with concurrent
workers booking overlapping groups.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.db import unit_of_work
from cloud.core.exceptions import InvalidInput
from cloud.fleet import service
from cloud.fleet.exceptions import GatewayNotFound, InvalidSequence
from cloud.fleet.models import Gateway
from cloud.ingestion.models import COUNTERS, IngestionStatistics

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 30, 0, 59, 30, 123456, tzinfo=UTC)
Unique = Callable[[str], str]


def new_gateway(session: Session, unique: Unique) -> str:
    created, _password = service.register_gateway(
        session=session, gateway_id=unique("gw"), name="Substation", site="North"
    )
    return created.id


def one_by_one(session: Session, sequences: list[tuple[str, int]]) -> list[object]:
    checks: list[object] = []
    for gateway_id, sequence in sequences:
        try:
            checks.append(
                service.advance_sequence(session=session, gateway_id=gateway_id, sequence=sequence)
            )
        except InvalidSequence:
            checks.append(None)
    return checks


def statistics(session: Session, gateway_id: str) -> list[tuple[object, ...]]:
    rows = service.ingestion_statistics(
        session=session,
        gateway_id=gateway_id,
        since=T0 - timedelta(hours=1),
        until=T0 + timedelta(hours=1),
    )
    return [(row.bucket_start_at, *(getattr(row, name) for name in COUNTERS)) for row in rows]


def test_advance_sequences_equals_one_by_one(session: Session, unique: Unique) -> None:
    # Two gateways booked as a group, and a twin pair booked one batch at a time.
    a, b, twin_a, twin_b = (new_gateway(session, unique) for _ in range(4))
    pattern = [
        ("a", 10), ("b", 5), ("a", 11), ("a", 15), ("b", 5), ("a", 12),
        ("a", -1), ("b", 2**63), ("b", 9), ("a", 16), ("b", 2**63 - 1),
    ]  # fmt: skip
    grouped = service.advance_sequences(
        session=session, sequences=[(a if g == "a" else b, n) for g, n in pattern]
    )
    single = one_by_one(session, [(twin_a if g == "a" else twin_b, n) for g, n in pattern])
    assert grouped == single
    assert grouped[3] == service.SequenceCheck(previous=11, gap=3, duplicate=False)
    assert grouped[4] == service.SequenceCheck(previous=5, gap=0, duplicate=True)
    assert grouped[6] is None and grouped[7] is None
    session.expire_all()
    last = dict(
        session.execute(
            select(Gateway.id, Gateway.last_sequence).where(Gateway.id.in_([a, b]))
        ).all()
    )
    assert last == {a: 16, b: 2**63 - 1}
    # The next group carries on from the stored values.
    assert service.advance_sequences(session=session, sequences=[(a, 18), (b, 3)]) == [
        service.SequenceCheck(previous=16, gap=1, duplicate=False),
        service.SequenceCheck(previous=2**63 - 1, gap=0, duplicate=True),
    ]
    assert service.advance_sequences(session=session, sequences=[]) == []


def test_advance_sequences_refuses_an_unknown_gateway(session: Session, unique: Unique) -> None:
    known = new_gateway(session, unique)
    with pytest.raises(GatewayNotFound):
        service.advance_sequences(session=session, sequences=[(known, 1), ("gw-none", 1)])


def test_count_ingestions_equals_one_by_one(session: Session, unique: Unique) -> None:
    a, b, twin_a, twin_b = (new_gateway(session, unique) for _ in range(4))
    minute = timedelta(minutes=1)
    pattern = [
        ("a", T0, dict(readings_accepted=10, batches=1)),
        ("b", T0, dict(readings_rejected=3, batches=1, duplicates=1)),
        ("a", T0.replace(second=1),
         dict(readings_accepted=5, readings_rejected=2, batches=1, sequence_gaps=3)),
        ("a", T0 + minute, dict(batches=1)),
        ("b", T0 + 2 * minute, dict(readings_accepted=7, batches=1)),
    ]  # fmt: skip
    service.count_ingestions(
        session=session,
        counts=[service.IngestionCount(a if g == "a" else b, at, **c) for g, at, c in pattern],
    )
    for g, at, c in pattern:
        service.count_ingestion(
            session=session, gateway_id=twin_a if g == "a" else twin_b, at=at, **c
        )
    bucket = T0.replace(second=0, microsecond=0)
    assert (
        statistics(session, a)
        == statistics(session, twin_a)
        == [
            (bucket, 15, 2, 2, 3, 0),
            (bucket + minute, 0, 0, 1, 0, 0),
        ]
    )
    assert statistics(session, b) == statistics(session, twin_b)
    # A second group adds to the same rows.
    service.count_ingestions(session=session, counts=[service.IngestionCount(a, T0, batches=4)])
    assert statistics(session, a)[0] == (bucket, 15, 2, 6, 3, 0)


def test_count_ingestions_refuses_bad_increments(session: Session, unique: Unique) -> None:
    known = new_gateway(session, unique)
    with pytest.raises(InvalidInput):
        service.count_ingestions(
            session=session,
            counts=[
                service.IngestionCount(known, T0, batches=1),
                service.IngestionCount(known, T0, readings_accepted=-1),
            ],
        )
    with pytest.raises(GatewayNotFound):
        service.count_ingestions(
            session=session,
            counts=[
                service.IngestionCount(known, T0, batches=1),
                service.IngestionCount("gw-none", T0),
            ],
        )


def test_concurrent_groups_on_overlapping_gateways_lose_nothing(
    factory: sessionmaker[Session], unique: Unique
) -> None:
    # Workers book groups of the same gateways in opposite orders: no deadlock,
    # every batch counted, each sequence seen as new exactly once.
    with unit_of_work(factory) as session:
        gateway_ids = [new_gateway(session, unique) for _ in range(3)]
    workers, rounds = 4, 10
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []
    fresh = [0] * workers

    def work(slot: int) -> None:
        order = gateway_ids if slot % 2 else gateway_ids[::-1]
        try:
            barrier.wait()
            for n in range(1, rounds + 1):
                with unit_of_work(factory) as session:
                    checks = service.advance_sequences(
                        session=session, sequences=[(g, n) for g in order]
                    )
                    service.count_ingestions(
                        session=session,
                        counts=[service.IngestionCount(g, T0, batches=1) for g in order],
                    )
                fresh[slot] += sum(1 for check in checks if check and not check.duplicate)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert sum(fresh) == len(gateway_ids) * rounds
    with unit_of_work(factory) as session:
        batches = session.scalars(
            select(IngestionStatistics.batches).where(
                IngestionStatistics.gateway_id.in_(gateway_ids)
            )
        ).all()
        assert sorted(batches) == [workers * rounds] * len(gateway_ids)
        last = session.scalars(
            select(Gateway.last_sequence).where(Gateway.id.in_(gateway_ids))
        ).all()
        assert last == [rounds] * len(gateway_ids)
