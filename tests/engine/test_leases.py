"""Lease rows, the same contract in this process and in PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from flowledger.engine.leases import Claim, Leases, MemoryLeases, PostgresLeases
from flowledger.engine.stores import parse_store_url
from flowledger.errors import StoreError

LEASE = 0.3


@pytest.fixture(params=["memory", "postgresql"])
def leases(request: pytest.FixtureRequest) -> Iterator[Leases]:
    if request.param == "memory":
        yield MemoryLeases(LEASE)
        return
    url = request.getfixturevalue("postgres_url")
    config = parse_store_url(url)
    from tests.postgres import connect

    schema = config.env["POSTGRES_SCHEMA"]
    with connect(url) as db:
        db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    rows = PostgresLeases(config, LEASE)
    yield rows
    rows.close()


def expire() -> None:
    time.sleep(LEASE * 1.5)  # leases are times: waiting one out is the behaviour under test


def test_a_free_row_is_claimed_once(leases: Leases) -> None:
    leases.offer("e1")
    leases.offer("e1")  # offering again changes nothing

    assert leases.claim_available("A", 10) == [Claim("e1")]
    assert leases.claim_available("B", 10) == []
    assert leases.claim("e1", "B") is None
    assert leases.holder("e1") == "A"


def test_claiming_a_missing_row_creates_it_and_the_holder_may_claim_again(leases: Leases) -> None:
    assert leases.claim("e1", "A") == Claim("e1")
    assert leases.claim("e1", "A") == Claim("e1")
    assert leases.claim("e1", "B") is None


def test_an_expired_lease_is_taken_over_naming_the_previous_worker(leases: Leases) -> None:
    leases.claim("e1", "A")
    leases.claim("e2", "A")
    expire()

    assert leases.holder("e1") is None
    assert sorted(leases.claim_available("B", 10), key=lambda c: c.execution_id) == [
        Claim("e1", "A", expired=True),
        Claim("e2", "A", expired=True),
    ]
    assert leases.renew("A", ["e1", "e2"]) == set()  # A finds out it lost them


def test_a_claim_of_one_expired_row_is_a_takeover(leases: Leases) -> None:
    leases.claim("e1", "A")
    expire()

    assert leases.claim("e1", "B") == Claim("e1", "A", expired=True)


def test_renewing_keeps_a_lease_and_only_for_the_executions_named(leases: Leases) -> None:
    leases.claim("kept", "A")
    leases.claim("dropped", "A")
    for _ in range(3):
        time.sleep(LEASE / 2)
        assert leases.renew("A", ["kept", "unknown"]) == {"kept"}

    assert leases.holder("kept") == "A"
    assert leases.holder("dropped") is None
    assert leases.renew("A", []) == set()


def test_a_released_row_is_free_at_once(leases: Leases) -> None:
    leases.claim("e1", "A")
    leases.release("e1", "B")  # not B's to release
    assert leases.claim_available("B", 10) == []

    leases.release("e1", "A")

    assert leases.holder("e1") is None
    assert leases.claim_available("B", 10) == [Claim("e1")]


def test_finishing_drops_the_row_unless_another_worker_holds_it(leases: Leases) -> None:
    leases.claim("e1", "A")
    leases.finish("e1", "B")
    assert leases.holder("e1") == "A"

    leases.finish("e1", "A")
    leases.offer("e2")
    leases.finish("e2", "B")  # a free row may be dropped by anyone

    assert leases.claim_available("C", 10) == []


def test_claim_available_takes_at_most_the_limit(leases: Leases) -> None:
    for number in range(5):
        leases.offer(f"e{number}")

    first = leases.claim_available("A", 2)
    second = leases.claim_available("B", 10)

    assert len(first) == 2
    assert len(second) == 3
    assert {c.execution_id for c in first} | {c.execution_id for c in second} == {
        f"e{number}" for number in range(5)
    }


def test_concurrent_claims_never_hand_one_row_to_two_workers(leases: Leases) -> None:
    for number in range(40):
        leases.offer(f"e{number}")
    won: dict[str, list[str]] = {}
    lock = threading.Lock()

    def claim_all(worker: str) -> None:
        while claims := leases.claim_available(worker, 3):
            with lock:
                for claim in claims:
                    won.setdefault(claim.execution_id, []).append(worker)

    threads = [threading.Thread(target=claim_all, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(won) == 40
    assert all(len(workers) == 1 for workers in won.values())


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    config = parse_store_url("postgresql://u:secret@127.0.0.1:1/db?connect_timeout=1")
    pytest.importorskip("psycopg")

    with pytest.raises(StoreError) as raised:
        PostgresLeases(config)

    assert "secret" not in str(raised.value)
    assert "leases unavailable" in str(raised.value)
