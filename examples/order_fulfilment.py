"""Run the order-fulfilment workflow on the embedded SQLite store and print its audit.

Two orders run: the first is charged (after a transient card-network failure that is
retried) and shipped; the second cannot be shipped, so its charge is refunded. Each
execution's history is printed as recorded, and its hash chain is verified.

    python examples/order_fulfilment.py [--store sqlite:///path.db]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from flowledger import ActionRegistry, Ledger, NonRetryableError, WorkflowEngine

HERE = Path(__file__).resolve().parent
actions = ActionRegistry()
_card_network_calls: dict[str, int] = {}


@actions.action("check_stock")
async def check_stock(sku: str) -> dict[str, object]:
    return {"sku": sku, "in_stock": True}


@actions.action("charge_card")
async def charge_card(order_id: str, amount: float) -> dict[str, object]:
    calls = _card_network_calls[order_id] = _card_network_calls.get(order_id, 0) + 1
    if calls == 1:
        raise ConnectionError("card network timed out")  # retryable: tried again
    return {"charge_id": f"ch_{order_id}", "amount": amount}


@actions.action("refund")
def refund(charge_id: str) -> dict[str, object]:  # a plain function: runs in a thread
    return {"refunded": charge_id}


@actions.action("ship")
async def ship(order_id: str, label: str) -> dict[str, object]:
    if order_id.endswith("-2"):
        raise NonRetryableError("address rejected by the courier")
    return {"tracking": f"TRK-{order_id}", "label": label}


def print_history(ledger: Ledger, execution_id: str) -> None:
    """Print the execution's audit timeline: one line per recorded event, with its hash."""
    state = ledger.get(execution_id)
    print(f"\nexecution {execution_id}: {state.status.value}")
    hashes = {entry.version: entry.hash for entry in ledger.history(execution_id)}
    for line in ledger.timeline(execution_id):
        print(
            f"  {line.version:>3} {line.timestamp:%H:%M:%S.%f} {line.type:<20} "
            f"{line.text}  [{hashes[line.version][:10]}]"
        )
    report = ledger.verify(execution_id)
    print(f"  hash chain: {'verified' if report.ok else report.problems} ({report.checked} events)")


async def main(store: str) -> None:
    async with WorkflowEngine(store, actions=actions) as engine:
        for order in ("order-1", "order-2"):
            await engine.run_workflow(
                HERE / "order_fulfilment.yaml",
                {"order_id": order, "amount": 42.5, "sku": "BOOK-1"},
                execution_id=f"{order}-{Path(store).stem}",
                timeout=30,
            )
        for order in ("order-1", "order-2"):
            print_history(engine.ledger, f"{order}-{Path(store).stem}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="store URL (default: a new SQLite file)")
    arguments = parser.parse_args()
    url = arguments.store or f"sqlite:///{tempfile.mkdtemp(prefix='flowledger-')}/demo.db"
    print(f"store: {url}")
    asyncio.run(main(url))
