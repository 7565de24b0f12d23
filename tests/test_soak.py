"""The short form of bench/soak.py: a minute of every fault and edge, and two forced restarts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "soak.py"


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_one_minute_soak_meets_every_target(tmp_path: Path) -> None:
    """60 s, 20 pipelines, every fault, open lines, progress bars, pods missing from answers,
    SIGTERM and SIGKILL restarts: the soak's targets hold, ids included."""
    spec = importlib.util.spec_from_file_location("soak", BENCH)
    assert spec is not None and spec.loader is not None
    soak = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = soak
    spec.loader.exec_module(soak)
    report = await soak.soak(60.0, 20, tmp_path)
    soak.print_report(report, 60.0, 20)
    assert report.problems == []
    assert report.observable > 1000
    assert report.emitted >= report.observable
    assert report.gaps > 0  # restarts happened and were flagged
    assert report.partials > 0  # open lines were held and snapshotted
    assert report.exit_codes == [0, -9, 0]
