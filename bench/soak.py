"""Soak: the real follower against a faulty simulator for minutes, restarted by SIGTERM and SIGKILL.

    python bench/soak.py [--duration 600] [--pipelines 100] [--no-final-newline] [--keep DIR]

The simulator runs in this process (real time) with every fault on: 429s with and without
Retry-After, 5xx, slow answers, malformed bodies, envelope errors, pod restarts with tail-error
phases, a key revoked for a while and a pipeline deleted mid-run; and with the edges of real
pods: each tail ends with the line being written (an open prefix without newline), some lines
are progress bars rewritten with `\r`, and 5% of the one-second slots leave a pod out of the
answers. `--no-final-newline` also drops the newline after each tail's last line, as an API that
never ends `logs` with one would. The follower runs as a subprocess with a state file, three
times: stopped by SIGTERM after a third of the time, by SIGKILL after two thirds, and by SIGTERM
at the end. Afterwards the emitted events are checked against the simulator's truth:

- `partial: true` events are provisional snapshots, not lines: lost, duplicated and holes count
  final log events only. A snapshot of (pod, seq) must be followed, in its run, by that pod's
  final line `seq`, unless the pod restarts (a gap), is removed, or the run ends first.
- A line is placed in the truth by its text, or, for a text that repeats (progress bars), by
  the offset between seq and truth index of the nearest line placed in the same stretch (same
  run and epoch, no gap between).
- Lost: observed lines (shown by a successful answer) never emitted final. Without a final
  newline, a line no answer showed anything after cannot be proven complete: it is only
  counted, as unproven, with how many of those were not even written as a snapshot.
- A restart whose first lines repeat the lines the pod ended with (a progress bar's text, often)
  cannot be told from no restart (README, *Limits*): such restarts and the lines they hid are
  counted apart, not as lost or holes.
- A pod left out of an answer is no removal: a `pod_removed` followed within `pods.grace_s` by a
  log event of the same pod, or a `pod_added` for a pod already followed, is noise.
- Ids: all log events of the three runs grouped by `id`; no id may name two different
  (pod, message, partial) values. Lines emitted again after the SIGKILL are counted by whether
  they kept their id (the checkpoint lined up) or got a new one (a new epoch).

The figures are printed; the exit status is 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import anyio
from aiohttp.test_utils import TestServer

from follower.clock import SystemClock
from follower.simulator.app import CONTROL, RECORDER, create_app
from follower.simulator.faults import FaultSettings
from follower.simulator.recorder import Recorder
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
GRACE_S = 60.0
"""pods.grace_s, written into the follower's configuration (its default)."""
KILLED_RUN = 1
"""The second run ends with SIGKILL: the third may repeat what it wrote after its checkpoint."""

Key = tuple[str, str]
"""(pipeline_id, pod)"""
Event = dict[str, object]


@dataclass
class SoakReport:
    """What a soak run measured; `problems` lists every missed target."""

    final_newline: bool = True
    produced: int = 0
    observable: int = 0
    emitted: int = 0
    duplicated: int = 0
    duplicated_outside_kill: int = 0
    lost_observable: int = 0
    unproven: int = 0
    unproven_undelivered: int = 0
    hidden_restarts: int = 0
    hidden_lost: int = 0
    gaps: int = 0
    unflagged_gaps: int = 0
    partials: int = 0
    partials_completed: int = 0
    partials_pod_went_away: int = 0
    partials_run_ended: int = 0
    partials_unresolved: int = 0
    pods_removed: int = 0
    pods_removed_back: int = 0
    pods_added_again: int = 0
    ids_two_lines: int = 0
    redelivered_same_id: int = 0
    redelivered_new_id: int = 0
    torn_lines: int = 0
    tracebacks: int = 0
    exit_codes: list[int] = field(default_factory=list)
    rss_kb: list[tuple[int, int]] = field(default_factory=list)
    api_errors: Counter[str] = field(default_factory=Counter)
    evidence: list[str] = field(default_factory=list)
    """Each lost line and unflagged hole with its pod and text, for `--keep`."""

    @property
    def problems(self) -> list[str]:
        found = []
        if self.duplicated_outside_kill:
            found.append(f"{self.duplicated_outside_kill} duplicates outside the SIGKILL window")
        if self.lost_observable:
            found.append(f"{self.lost_observable} observable lines lost")
        if self.unflagged_gaps:
            found.append(f"{self.unflagged_gaps} holes without a gap event")
        if self.partials_unresolved:
            found.append(f"{self.partials_unresolved} partial snapshots never completed")
        if self.pods_removed_back or self.pods_added_again:
            found.append(
                f"{self.pods_removed_back} pod_removed for a pod back within {GRACE_S:g} s, "
                f"{self.pods_added_again} pod_added for a pod already followed"
            )
        if self.ids_two_lines:
            found.append(f"{self.ids_two_lines} ids naming two different lines")
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


def read_events(out: Path, report: SoakReport) -> list[Event]:
    events = []
    for line in out.read_bytes().split(b"\n")[:-1]:  # the sink ends every event with "\n"
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


@dataclass
class Truth:
    """One pod's true lines, numbered across its incarnations, and which of them polls saw."""

    lines: list[str]
    starts: list[int]
    """The index of each incarnation's first line."""
    where: dict[str, list[int]]
    """Each text's indexes: one for an ordinary line, many for a repeated progress bar."""
    observed: set[int]
    span_ends: set[int]
    """The last line of each observed stretch: no answer showed a line after it."""

    @classmethod
    def of(cls, world: World, recorder: Recorder, key: Key, until: float) -> Truth:
        lines: list[str] = []
        starts: dict[int, int] = {}
        for incarnation, written in world.history(*key, until):
            starts[incarnation] = len(lines)
            lines.extend(written)
        where: dict[str, list[int]] = defaultdict(list)
        for at, line in enumerate(lines):
            where[line].append(at)
        observed: set[int] = set()
        span_ends: set[int] = set()
        for incarnation, first, end in recorder.observed_spans(*key):
            base = starts[incarnation]
            observed.update(range(base + first, base + end))
            span_ends.add(base + end - 1)
        return cls(lines, sorted(starts.values()), dict(where), observed, span_ends)

    def text(self, index: int) -> str | None:
        return self.lines[index] if 0 <= index < len(self.lines) else None

    def hidden_restart(self, last: int, at: int) -> int | None:
        """The first line of an incarnation that began after line `last` and whose lines before
        `at` repeat the lines the pod had ended with at `last`, else None. Taken for lines
        already seen, they hide the restart: the documented limit of tail diffing (README,
        *Limits*), which a progress bar's repeated text reaches with one line."""
        for start in self.starts:
            count = at - start
            if (
                last < start <= at
                and 0 < count <= last + 1
                and self.lines[start:at] == self.lines[last + 1 - count : last + 1]
            ):
                return start
        return None

    def hidden_at_end(self, last: int) -> set[int]:
        """Lines of incarnations begun after line `last` that a poll could take for the lines
        the pod had ended with (`hidden_restart` when no later line was emitted)."""
        hidden: set[int] = set()
        for start in (s for s in self.starts if s > last >= 0):
            for count in range(min(last + 1, len(self.lines) - start), 0, -1):
                if self.lines[start : start + count] == self.lines[last + 1 - count : last + 1]:
                    hidden.update(range(start, start + count))
                    break
        return hidden


def place(truth: Truth, finals: list[tuple[object, int, str]]) -> list[int]:
    """The truth index of each of a pod's final lines, in emission order (-1: not a true line).

    `finals` holds (stretch, seq, message): within one stretch (run, epoch, no gap between) seq
    and truth index differ by a constant unless lines were skipped, so a repeated text takes the
    offset of the nearest line placed by a unique text; the hole check then judges the result.
    """
    placed: list[int | None] = []
    for _, _, message in finals:
        found = truth.where.get(message, [])
        placed.append(found[0] if len(found) == 1 else -1 if not found else None)
    for order in (range(len(finals)), range(len(finals) - 1, -1, -1)):
        stretch, offset = None, None
        for at in order:
            here, seq, message = finals[at]
            if here != stretch:
                stretch, offset = here, None
            index = placed[at]
            if index is None and offset is not None and truth.text(seq + offset) == message:
                placed[at] = index = seq + offset
            if index is not None and index >= 0:
                offset = index - seq
    result, last = [], -1
    for at, index in enumerate(placed):
        if index is None:  # no placed neighbour in its stretch: the next occurrence a poll saw
            every = truth.where[finals[at][2]]
            found = [i for i in every if i > last] or every
            result.append(next((i for i in found if i in truth.observed), found[0]))
        else:
            result.append(index)
        last = max(last, result[-1])
    return result


def pod_streams(runs: list[list[Event]]) -> dict[Key, list[tuple[int, Event]]]:
    """Each pod's events of all runs, in order, with the index of the run that wrote them."""
    streams: dict[Key, list[tuple[int, Event]]] = defaultdict(list)
    for index, events in enumerate(runs):
        for event in events:
            if "pod" in event:
                streams[str(event["pipeline_id"]), str(event["pod"])].append((index, event))
    return streams


def stretches(stream: list[tuple[int, Event]]) -> Iterator[tuple[object, Event]]:
    """The final log events of a pod's stream, each with the stretch it belongs to."""
    gaps = 0
    for run, event in stream:
        if event["event"] == "gap":
            gaps += 1
        elif event["event"] == "log" and not event.get("partial"):
            epoch = str(event["id"]).rsplit("/", 2)[-2]
            yield (run, epoch, gaps), event


def check_lines(
    key: Key, truth: Truth, stream: list[tuple[int, Event]], report: SoakReport
) -> None:
    """Lost, duplicated and unflagged lines of one pod, and its redeliveries after the SIGKILL."""
    finals = list(stretches(stream))
    indexes = iter(place(truth, [(s, int(str(e["seq"])), str(e["message"])) for s, e in finals]))
    first_id: dict[int, tuple[int, str]] = {}
    hidden: set[int] = set()
    expected: int | None = None
    last = -1
    for run, event in stream:
        kind = event["event"]
        if kind == "gap":
            report.gaps += 1
            expected = None
        if kind != "log" or event.get("partial"):
            continue
        at = next(indexes)
        report.emitted += 1
        if at in first_id:
            report.duplicated += 1
            report.duplicated_outside_kill += run != KILLED_RUN + 1
            first_run, first = first_id[at]
            if first_run == KILLED_RUN and run == KILLED_RUN + 1:
                same = first == event["id"]
                report.redelivered_same_id += same
                report.redelivered_new_id += not same
            continue
        first_id[at] = run, str(event["id"])
        hidden |= hidden_before_gap(truth, expected, last, at, report)
        if not (at >= 0 and (at == expected or (expected is None and at > last))):
            start = truth.hidden_restart(last, at) if at > last >= 0 else None
            if start is None:
                report.unflagged_gaps += 1
                report.evidence.append(
                    f"hole: {event['id']} (run {run}) is true line {at}, expected {expected}"
                )
            else:
                report.hidden_restarts += 1
                hidden.update(range(start, at))
        expected, last = at + 1, max(last, at)
    missing = truth.observed - first_id.keys()
    at_end = truth.hidden_at_end(last) & missing
    report.hidden_restarts += bool(at_end)
    hidden |= at_end
    report.hidden_lost += len(missing & hidden)
    missing -= hidden
    if not report.final_newline:
        unproven = missing & truth.span_ends
        snapshots = {str(e["message"]) for _, e in stream if e.get("partial")}
        report.unproven += len(unproven)
        report.unproven_undelivered += sum(truth.lines[i] not in snapshots for i in unproven)
        missing -= unproven
    report.lost_observable += len(missing)
    report.evidence.extend(f"lost: {key} line {i}: {truth.lines[i]!r}" for i in sorted(missing))
    report.observable += len(truth.observed)


def hidden_before_gap(
    truth: Truth, expected: int | None, last: int, at: int, report: SoakReport
) -> set[int]:
    """Lines of a flagged hole (a gap came since line `last`: `expected` is None) that a restart
    hid before the gap was seen: the first lines of an incarnation that repeat the ones the pod
    had ended with at `last` (the documented limit)."""
    if expected is not None or not at > last + 1 > 0:
        return set()
    hidden = {i for i in truth.hidden_at_end(last) if i < at}
    report.hidden_restarts += bool(hidden)
    return hidden


def check_partials(stream: list[tuple[int, Event]], report: SoakReport) -> None:
    """Each snapshot of (pod, seq) is followed in its run by final line seq, or by the pod
    restarting (gap) or leaving (pod_removed), or by the end of the run."""
    waiting: list[int] = []
    run_of = 0
    end: list[tuple[int, Event]] = [(-1, {"event": "end"})]
    for run, event in stream + end:
        kind = event["event"]
        if run != run_of:
            report.partials_run_ended += len(waiting)
            waiting, run_of = [], run
        if kind in ("gap", "pod_removed"):
            report.partials_pod_went_away += len(waiting)
            waiting = []
        elif kind == "log" and event.get("partial"):
            report.partials += 1
            waiting.append(int(str(event["seq"])))
        elif kind == "log":
            seq = int(str(event["seq"]))
            report.partials_completed += sum(s == seq for s in waiting)
            report.partials_unresolved += sum(s != seq for s in waiting)
            waiting = []


def check_presence(stream: list[tuple[int, Event]], report: SoakReport) -> None:
    """A pod left out of an answer for a moment must cause no pod_removed / pod_added."""
    followed = False
    removed_at: float | None = None
    for _, event in stream:
        kind = event["event"]
        if kind == "pod_added":
            report.pods_added_again += followed
            followed = True
        elif kind == "pod_removed":
            report.pods_removed += 1
            followed, removed_at = False, wall(event)
        elif kind == "log":
            followed = True
            if removed_at is not None and wall(event) - removed_at <= GRACE_S:
                report.pods_removed_back += 1
            removed_at = None


def wall(event: Event) -> float:
    return datetime.fromisoformat(str(event["ts"])).timestamp()


def check_ids(runs: list[list[Event]], report: SoakReport) -> None:
    """No id names two lines: every id's log events share one (pod, message, partial)."""
    named: dict[str, set[tuple[object, ...]]] = defaultdict(set)
    for events in runs:
        for event in events:
            if event["event"] == "log":
                line = event["pipeline_id"], event["pod"], event["message"], event.get("partial")
                named[str(event["id"])].add(line)
    report.ids_two_lines = sum(len(values) > 1 for values in named.values())


def check(
    world: World, recorder: Recorder, runs: list[list[Event]], until: float, report: SoakReport
) -> None:
    """Compare the emitted events of all runs with the truth and fill in the report."""
    for events in runs:
        report.api_errors.update(str(e["error"]) for e in events if e["event"] == "api_error")
    streams = pod_streams(runs)
    for pipeline_id in world.pipeline_ids:
        for pod in recorder.observed_pods(pipeline_id):
            streams.setdefault((pipeline_id, pod), [])
    for key, stream in streams.items():
        check_lines(key, Truth.of(world, recorder, key, until), stream, report)
        check_partials(stream, report)
        check_presence(stream, report)
    check_ids(runs, report)


async def soak(
    duration_s: float, pipelines: int, folder: Path, *, final_newline: bool = True
) -> SoakReport:
    """Run the whole soak and return its report."""
    report = SoakReport(final_newline=final_newline)
    clock = SystemClock()
    settings = SimSettings(
        pipelines=pipelines, pods=2, rate=2.0, rate_skew=1.0, window=200,
        restart_every_s=max(30.0, duration_s / 4), tail_error_s=4.0, backlog_s=30.0, seed=5,
        open_lines=True, progress_bars=True, vanish_ratio=0.05, final_newline=final_newline,
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
            f"[budget]\nrequests_per_s = {2.0 * pipelines}\nburst = {2 * pipelines}\n"
            f"[pods]\ngrace_s = {GRACE_S}\n",
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
    report.produced = sum(
        len(world.lines(p, pod, until))
        for p in world.pipeline_ids
        for pod in world.pod_names(p, until)
    )
    runs = [read_events(folder / f"run{i}.jsonl", report) for i in range(3)]
    report.tracebacks = sum(
        (folder / f"run{i}.err").read_text(errors="replace").count("Traceback") for i in range(3)
    )
    check(world, recorder, runs, until, report)
    return report


def print_report(report: SoakReport, duration_s: float, pipelines: int) -> None:
    edges = "open lines, progress bars, 5% vanishing pods" + (
        "" if report.final_newline else ", no final newline"
    )
    print(f"soak: {pipelines} pipelines x 2 pods, {duration_s:.0f} s, every fault on, {edges}, "
          "restarts: SIGTERM, SIGKILL")
    rows = [
        ("lines produced", report.produced),
        ("observable (seen by a successful poll)", report.observable),
        ("emitted (final log events)", report.emitted),
        ("duplicated (all)", report.duplicated),
        ("duplicated outside the SIGKILL window", report.duplicated_outside_kill),
        ("observable lines lost", report.lost_observable),
        ("gaps flagged", report.gaps),
        ("holes without a gap (unflagged)", report.unflagged_gaps),
        ("restarts hidden by a repeated line (limit)", report.hidden_restarts),
        ("  observable lines they hid", report.hidden_lost),
        ("partial snapshots", report.partials),
        ("  completed by their final line", report.partials_completed),
        ("  pod restarted or left first", report.partials_pod_went_away),
        ("  run ended first", report.partials_run_ended),
        ("  followed by another line (unresolved)", report.partials_unresolved),
        ("pod_removed events", report.pods_removed),
        (f"  for a pod logging again within {GRACE_S:g} s", report.pods_removed_back),
        ("pod_added for a pod already followed", report.pods_added_again),
        ("ids naming two different lines", report.ids_two_lines),
        ("redelivered after SIGKILL, same id", report.redelivered_same_id),
        ("redelivered after SIGKILL, another id", report.redelivered_new_id),
        ("torn or non-JSON stdout lines", report.torn_lines),
        ("tracebacks on stderr", report.tracebacks),
    ]
    if not report.final_newline:
        rows[6:6] = [
            ("unproven last lines (nothing shown after)", report.unproven),
            ("  not even written as a snapshot", report.unproven_undelivered),
        ]
    for name, value in rows:
        print(f"  {name:<44} {value:>10,}")
    print(f"  {'exit codes':<44} {report.exit_codes}")
    for index, (warm, end) in enumerate(report.rss_kb):
        growth = (end - warm) / warm * 100 if warm else 0.0
        print(f"  RSS run {index}: after warm-up {warm:,} KiB, at end {end:,} KiB ({growth:+.1f}%)")
    print(f"  api_error events by kind: {dict(report.api_errors)}")
    print("  result:", "all targets met" if not report.problems else "; ".join(report.problems))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--pipelines", type=int, default=100, help="default 100")
    parser.add_argument(
        "--no-final-newline", action="store_true",
        help="the API never ends logs with a newline (a pod's last line stays unproven)",
    )
    parser.add_argument(
        "--keep", type=Path, metavar="FOLDER",
        help="keep the runs' events, stderr and state, and the lost lines and holes "
        "(evidence.txt), in FOLDER",
    )
    ns = parser.parse_args()
    with TemporaryDirectory() as temporary:
        folder = ns.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        report = anyio.run(
            lambda: soak(ns.duration, ns.pipelines, folder, final_newline=not ns.no_final_newline)
        )
        if ns.keep:
            (folder / "evidence.txt").write_text("".join(f"{line}\n" for line in report.evidence))
    print_report(report, ns.duration, ns.pipelines)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
