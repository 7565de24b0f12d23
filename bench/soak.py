"""Soak: the real follower against a faulty simulator for minutes, restarted by SIGTERM and SIGKILL.

    python bench/soak.py [--duration 600] [--pipelines 100]

The simulator runs in this process (real time) with every fault on: 429s with and without
Retry-After, 5xx, slow answers, malformed bodies, envelope errors, pod restarts with tail-error
phases, a key revoked for a while and a pipeline deleted mid-run. The follower runs as a
subprocess with a state file, three times: stopped by SIGTERM after a third of the time, by
SIGKILL after two thirds, and by SIGTERM at the end. Afterwards the emitted events are checked
against the simulator's truth and the figures printed; the exit status is 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import anyio
from aiohttp.test_utils import TestServer

from follower.clock import SystemClock
from follower.simulator.app import CONTROL, RECORDER, create_app
from follower.simulator.faults import FaultSettings
from follower.simulator.world import SimSettings, World

KEY = "soak-key-7f3a"
ROOT = Path(__file__).resolve().parent.parent
FAULTS = FaultSettings(
    rate_429=0.03,
    retry_after_s=1.0,
    rate_5xx=0.03,
    rate_slow=0.02,
    slow_s=2.0,
    rate_malformed=0.02,
    rate_envelope_error=0.02,
    seed=17,
)


@dataclass
class SoakReport:
    """What a soak run measured; `problems` lists every missed target."""

    produced: int = 0
    observable: int = 0
    emitted: int = 0
    duplicated: int = 0
    duplicated_outside_kill: int = 0
    lost_observable: int = 0
    gaps: int = 0
    unflagged_gaps: int = 0
    torn_lines: int = 0
    tracebacks: int = 0
    exit_codes: list[int] = field(default_factory=list)
    rss_kb: list[tuple[int, int]] = field(default_factory=list)
    api_errors: Counter[str] = field(default_factory=Counter)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.duplicated_outside_kill:
            found.append(f"{self.duplicated_outside_kill} duplicates outside the SIGKILL window")
        if self.lost_observable:
            found.append(f"{self.lost_observable} observable lines lost")
        if self.unflagged_gaps:
            found.append(f"{self.unflagged_gaps} holes without a gap event")
        if self.tracebacks:
            found.append(f"{self.tracebacks} tracebacks")
        if self.torn_lines:
            found.append(f"{self.torn_lines} lines that are not one JSON object")
        if self.exit_codes[0::2] != [0] * len(self.exit_codes[0::2]):
            found.append(f"exit codes {self.exit_codes} (SIGTERM must give 0)")
        for warm, end in self.rss_kb:
            if end > warm * 1.10:
                found.append(f"RSS grew from {warm} to {end} KiB after warm-up (> 10%)")
        return found


def rss_kb(pid: int) -> int:
    """Resident set size of `pid` in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def run_follower(
    args: list[str], out: Path, err: Path, *, seconds: float, sig: signal.Signals,
    report: SoakReport,
) -> None:
    """Run one follower process for `seconds`, sampling RSS, then end it with `sig`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDRUSH_")}
    env["GOLDRUSH_SERVICE_KEY"] = KEY
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    clock = SystemClock()
    with out.open("ab") as stdout, err.open("ab") as stderr:
        process = await anyio.open_process(
            [sys.executable, "-m", "follower", *args], stdout=stdout, stderr=stderr, env=env
        )
        warm_up = min(30.0, seconds / 4)
        await clock.sleep(warm_up)
        warm = rss_kb(process.pid)
        await clock.sleep(seconds - warm_up)
        end = rss_kb(process.pid)
        process.send_signal(sig)
        with anyio.fail_after(30):
            report.exit_codes.append(await process.wait())
    if sig == signal.SIGTERM:
        report.rss_kb.append((warm, end))


def read_events(out: Path, report: SoakReport) -> list[dict[str, object]]:
    events = []
    for line in out.read_bytes().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            report.torn_lines += 1
            continue
        if not isinstance(event, dict) or "event" not in event:
            report.torn_lines += 1
            continue
        events.append(event)
    return events


def check(
    world: World, observed: dict[tuple[str, str], list[str]], runs: list[list[dict[str, object]]],
    until: float, report: SoakReport,
) -> None:
    """Compare the emitted events of all runs with the truth and fill in the report."""
    killed_run = 1  # the second run ends with SIGKILL: the third may repeat its tail
    seen: dict[tuple[str, str], set[str]] = {}
    expected: dict[tuple[str, str], int | None] = {}
    last: dict[tuple[str, str], int] = {}
    positions: dict[tuple[str, str], dict[str, int]] = {}
    for index, events in enumerate(runs):
        for event in events:
            kind = event["event"]
            if kind == "api_error":
                report.api_errors[str(event["error"])] += 1
            if "pod" not in event:
                continue
            key = (str(event["pipeline_id"]), str(event["pod"]))
            if kind == "gap":
                report.gaps += 1
                expected[key] = None
            if kind != "log":
                continue
            message = str(event["message"])
            report.emitted += 1
            pod_seen = seen.setdefault(key, set())
            if message in pod_seen:
                report.duplicated += 1
                report.duplicated_outside_kill += index != killed_run + 1
                continue
            pod_seen.add(message)
            if key not in positions:
                truth = world.lines(key[0], key[1], until)
                positions[key] = {line: at for at, line in enumerate(truth)}
            at = positions[key].get(message, -1)
            want = expected.get(key)
            if not (at == want or (want is None and at > last.get(key, -1))):
                report.unflagged_gaps += 1
            expected[key] = at + 1
            last[key] = at
    for key, lines in observed.items():
        report.lost_observable += sum(line not in seen.get(key, set()) for line in lines)
    report.observable = sum(len(lines) for lines in observed.values())


async def soak(duration_s: float, pipelines: int, folder: Path) -> SoakReport:
    """Run the whole soak and return its report."""
    report = SoakReport()
    clock = SystemClock()
    settings = SimSettings(
        pipelines=pipelines, pods=2, rate=2.0, rate_skew=1.0, window=200,
        restart_every_s=max(30.0, duration_s / 4), tail_error_s=4.0, backlog_s=30.0, seed=5,
    )
    world = World(settings, start=clock.monotonic(), wall_at_start=clock.wall())
    app = create_app(world, clock, KEY, FAULTS)
    control = app[CONTROL]
    async with TestServer(app, host="127.0.0.1") as server:
        base_url = str(server.make_url("")).rstrip("/")
        config = folder / "soak.toml"
        config.write_text(
            f'base_url = "{base_url}"\ninterval_s = 1.0\ncheckpoint_interval_s = 2.0\n'
            f"pipelines = {json.dumps(world.pipeline_ids)}\n[backoff]\nmax_s = 8.0\n"
            f"[budget]\nrequests_per_s = {2.0 * pipelines}\nburst = {2 * pipelines}\n",
            encoding="utf-8",
        )
        args = ["run", "--config", str(config), "--state-file", str(folder / "state.json")]
        third = duration_s / 3

        async def disturb() -> None:
            await clock.sleep(duration_s / 4)
            control.revoke_key()
            await clock.sleep(5.0)
            control.restore_key()
            await clock.sleep(duration_s / 4 - 5.0)
            control.delete_pipeline(world.pipeline_ids[-1])
            control.set_faults(dataclasses.replace(FAULTS, retry_after_s=None))

        async with anyio.create_task_group() as group:
            group.start_soon(disturb)
            for index, sig in enumerate((signal.SIGTERM, signal.SIGKILL, signal.SIGTERM)):
                out, err = folder / f"run{index}.jsonl", folder / f"run{index}.err"
                await run_follower(args, out, err, seconds=third, sig=sig, report=report)
            group.cancel_scope.cancel()
        until = clock.monotonic()
        recorder = app[RECORDER]
        observed = {
            (pipeline_id, pod): recorder.observed(pipeline_id, pod)
            for pipeline_id in world.pipeline_ids
            for pod in recorder.observed_pods(pipeline_id)
        }
    report.produced = sum(
        len(world.lines(p, pod, until))
        for p in world.pipeline_ids
        for pod in world.pod_names(p, until)
    )
    runs = [read_events(folder / f"run{i}.jsonl", report) for i in range(3)]
    report.tracebacks = sum(
        (folder / f"run{i}.err").read_text(errors="replace").count("Traceback") for i in range(3)
    )
    check(world, observed, runs, until, report)
    return report


def print_report(report: SoakReport, duration_s: float, pipelines: int) -> None:
    print(f"soak: {pipelines} pipelines x 2 pods, {duration_s:.0f} s, every fault on, "
          "restarts: SIGTERM, SIGKILL")
    rows = [
        ("lines produced", report.produced),
        ("observable (seen by a successful poll)", report.observable),
        ("emitted", report.emitted),
        ("duplicated (all)", report.duplicated),
        ("duplicated outside the SIGKILL window", report.duplicated_outside_kill),
        ("observable lines lost", report.lost_observable),
        ("gaps flagged", report.gaps),
        ("holes without a gap (unflagged)", report.unflagged_gaps),
        ("torn or non-JSON stdout lines", report.torn_lines),
        ("tracebacks on stderr", report.tracebacks),
    ]
    for name, value in rows:
        print(f"  {name:<42} {value:>10,}")
    print(f"  {'exit codes':<42} {report.exit_codes}")
    for index, (warm, end) in enumerate(report.rss_kb):
        growth = (end - warm) / warm * 100 if warm else 0.0
        print(f"  RSS run {index}: after warm-up {warm:,} KiB, at end {end:,} KiB ({growth:+.1f}%)")
    print(f"  api_error events by kind: {dict(report.api_errors)}")
    print("  result:", "all targets met" if not report.problems else "; ".join(report.problems))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--pipelines", type=int, default=100, help="default 100")
    ns = parser.parse_args()
    with TemporaryDirectory() as folder:
        report = anyio.run(soak, ns.duration, ns.pipelines, Path(folder))
    print_report(report, ns.duration, ns.pipelines)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
