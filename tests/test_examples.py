"""The examples run as the README says, on a real SQLite file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_order_fulfilment_prints_two_verified_audit_histories(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/demo.db"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "order_fulfilment.py"), "--store", store],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "execution order-1-demo: COMPLETED" in out
    assert "execution order-2-demo: ROLLED_BACK" in out
    assert "StepRetryScheduled" in out
    assert 'compensation returned {"refunded":"ch_order-2"}' in out
    assert out.count("hash chain: verified") == 2
