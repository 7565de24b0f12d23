"""`follower tail` with stern's habits: --pod/--exclude-pod, --tail N, -p, -o json, -t, short pod
prefixes, a quiet exit when the reader leaves; `follower pipelines -o json|wide`. Each new flag is
run for real against the simulator, piped and on a pseudo-terminal."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
import pytest
from test_cli import KEY, env_with, follower, served
from test_interactive import run_on_a_terminal

from follower.cli.interactive import FirstLook, PodFilter
from follower.core.events import Event, LogEvent, PodAddedEvent, TailErrorEvent
from follower.sinks.terminal import TerminalSink, short_pod

P = "pipe_fa28e4ef28fa4f7b9ffc62e162d"
POD_A = "pipeline-covalent-postgres-pipe-fa28e4ef28fa4f7b9ffc62e162dmlm2"
POD_B = "pipeline-covalent-postgres-pipe-fa28e4ef28fa4f7b9ffc62e162dx7k4q"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
T = TypeVar("T")


# --- pure pieces ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod", "short"),
    [
        (POD_A, "mlm2"),  # the docs' example: the id whole, then the random part
        ("pipeline-covalent-webhook-pipe-fa28e4ef28fa4f7b9ffc62e1xkb2t", "xkb2t"),  # id cut
        ("pipeline-covalent-postgres-pipe-fa28e4ef28fa4f7b9ffc62e162d-abc12", "abc12"),
        ("some-other-pod-name", "some-other-pod-name"),  # no id in it: the whole name
        ("pipeline-covalent-postgres-pipe-fa28e4ef28fa4f7b9ffc62e162dz", POD_A[:-4] + "z"),
    ],
)
def test_short_pod_is_the_part_after_the_pipeline_id(pod: str, short: str) -> None:
    """Like stern, a pod is shown by what tells it apart; too short a rest keeps the name."""
    assert short_pod(P, pod) == short


def logs(pod: str, first: int, count: int) -> list[Event]:
    return [LogEvent(1.0, P, pod, seq, f"line {seq}") for seq in range(first, first + count)]


def test_first_look_keeps_the_last_n_history_lines_per_pod() -> None:
    """--tail 2: of each pod's first answer only its last 2 lines; later lines all."""
    look = FirstLook(2)
    first = look.select([PodAddedEvent(1.0, P, POD_A), *logs(POD_A, 1, 5),
                         PodAddedEvent(1.0, P, POD_B), *logs(POD_B, 1, 3)])
    assert [(e.pod, e.seq) for e in first if isinstance(e, LogEvent)] == [
        (POD_A, 4), (POD_A, 5), (POD_B, 2), (POD_B, 3),
    ]
    later = look.select(logs(POD_A, 6, 4))
    assert [e.seq for e in later if isinstance(e, LogEvent)] == [6, 7, 8, 9]


def test_first_look_waits_through_a_tail_error_and_spares_empty_tails() -> None:
    """A pod in a tail error at first: its history is cut when it comes. A pod whose first tail
    was empty: its next lines are new, all shown. A pod added later: all shown."""
    look = FirstLook(1)
    look.select([PodAddedEvent(1.0, P, POD_A), TailErrorEvent(1.0, P, POD_A, "starting", 1.0),
                 PodAddedEvent(1.0, P, POD_B)])
    batch = look.select([*logs(POD_A, 1, 4), *logs(POD_B, 1, 3)])
    assert [(e.pod, e.seq) for e in batch if isinstance(e, LogEvent)] == [
        (POD_A, 4), (POD_B, 1), (POD_B, 2), (POD_B, 3),
    ]
    newcomer = "pipeline-covalent-postgres-pipe-fa28e4ef28fa4f7b9ffc62e162dnew01"
    assert len(look.select([PodAddedEvent(1.0, P, newcomer), *logs(newcomer, 1, 3)])) == 4
    assert len(FirstLook(-1).select(logs(POD_A, 1, 7))) == 7


def test_pod_filter_includes_and_excludes_by_name() -> None:
    """--pod: any pattern matches; --exclude-pod: none does; pipeline events always pass."""
    only_a = PodFilter((re.compile("mlm2$"),), ())
    not_a = PodFilter((), (re.compile("mlm2"),))
    event_a, event_b = logs(POD_A, 1, 1)[0], logs(POD_B, 1, 1)[0]
    assert only_a.accepts(event_a) and not only_a.accepts(event_b)
    assert not not_a.accepts(event_a) and not_a.accepts(event_b)


async def test_short_prefixes_name_each_pod_once_with_its_pipeline() -> None:
    """Short prefixes: a `+ pipeline suffix (pod)` line on a pod's first event, then `suffix`."""
    stream = io.StringIO()
    sink = TerminalSink(stream, environ={}, is_tty=False, labels={P: "indexer"},
                        short_pods=True)
    await sink.write([PodAddedEvent(1.0, P, POD_A), *logs(POD_A, 1, 2), *logs(POD_B, 1, 1)])
    assert stream.getvalue().splitlines() == [
        f"+ indexer mlm2 ({POD_A})",
        "mlm2 | line 1",
        "mlm2 | line 2",
        f"+ indexer x7k4q ({POD_B})",
        "x7k4q | line 1",
    ]


# --- the real command, piped ---------------------------------------------------------------------


def first_poll_lines(stdout: list[str]) -> Counter[str]:
    """With -t: how many lines each pod printed at the first (earliest) timestamp."""
    stamped = [line.split(" ", 2) for line in stdout if " | " in line]
    first_ts = min(ts for ts, _, _ in stamped)
    return Counter(pod for ts, pod, _ in stamped if ts == first_ts)


async def test_pod_tail_timestamps_and_short_prefixes_piped() -> None:
    """-p NAME --pod RE --tail 3 -t, piped: only the chosen pod, 3 history lines, then new
    lines, every line stamped and prefixed by the pod's suffix, no colour."""
    async with served() as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        name = sim.world.info(pipeline_id)["name"]
        pods = sim.world.pod_names(pipeline_id, sim.world.start + 5.0)
        wanted = short_pod(pipeline_id, pods[0])
        async with follower(
            "tail", "-p", name, "--pod", f"{re.escape(wanted)}$", "--tail", "3", "-t",
            "--interval", "0.2", "--base-url", sim.base_url,
        ) as run:
            await run.wait_for(" | ", count=8)
            run.process.send_signal(signal.SIGINT)
            assert await run.exit_code() == 0
    shown = [line for line in run.stdout if " | " in line]
    assert {line.split(" ")[1] for line in shown} == {wanted}
    assert first_poll_lines(run.stdout) == {wanted: 3}
    assert any(line.split(" ", 1)[1] == f"+ {name} {wanted} ({pods[0]})" for line in run.stdout)
    assert not any(ANSI.search(line) for line in run.stdout)


async def test_exclude_pod_and_json_output_piped() -> None:
    """--exclude-pod RE -o json --tail 2: JSON events of the other pods only, 2 history lines
    each at the first poll."""
    async with served() as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        pods = sim.world.pod_names(pipeline_id, sim.world.start + 5.0)
        async with follower(
            "tail", pipeline_id, "--exclude-pod", re.escape(pods[0]), "-o", "json", "--tail",
            "2", "--interval", "0.2", "--base-url", sim.base_url,
        ) as run:
            await run.wait_for('"event":"log"', count=6)
            run.process.send_signal(signal.SIGINT)
            assert await run.exit_code() == 0
    events = run.events()
    log_events = [e for e in events if e["event"] == "log"]
    assert {e["pod"] for e in events if "pod" in e} == set(pods[1:])
    first_ts = min(str(e["ts"]) for e in log_events)
    assert Counter(e["pod"] for e in log_events if e["ts"] == first_ts) == dict.fromkeys(
        pods[1:], 2
    )


async def test_tail_into_a_closed_pipe_exits_0_silently() -> None:
    """`follower tail ... | head -n 3`: once the reader leaves, exit 0 and nothing on stderr."""
    async with served() as sim:
        got, code, stderr = await head_of(
            ["tail", sim.world.pipeline_ids[0], "--base-url", sim.base_url, "--tail", "-1",
             "--interval", "0.2"],
            env_with(GOLDRUSH_SERVICE_KEY=KEY),
        )
    assert len(got) == 3 and all(got)
    assert code == 0
    assert stderr == b""


async def head_of(args: list[str], env: dict[str, str]) -> tuple[list[bytes], int, bytes]:
    """`follower ARGS | head -n 3`: the three lines read, the exit code once the pipe is closed,
    and what the process wrote on stderr."""
    process = subprocess.Popen(  # noqa: ASYNC220 - a blocking read of 3 lines is the point
        [sys.executable, "-m", "follower", *args], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    got = await run_blocking(lambda: [process.stdout.readline() for _ in range(3)])
    process.stdout.close()
    code = await run_blocking(lambda: process.wait(timeout=30))
    stderr = process.stderr.read()
    process.stderr.close()
    return got, code, stderr


async def run_blocking(call: Callable[[], T]) -> T:
    """A blocking call (pipe reads, wait) in a worker thread."""
    return await anyio.to_thread.run_sync(call)


async def test_unknown_pipeline_id_exits_1() -> None:
    """A well-formed id the key cannot see: exit 1 and a sentence, no traceback."""
    async with served() as sim, follower(
        "tail", "pipe_0000000000000000000000000aa", "--base-url", sim.base_url
    ) as run:
        assert await run.exit_code() == 1
    assert "no pipeline with id 'pipe_0000000000000000000000000aa'" in "\n".join(run.stderr)
    assert "Traceback" not in run.everything()


async def test_no_pipeline_named_exits_2() -> None:
    """Neither PIPELINE nor -p: exit 2 and the fix."""
    async with follower("tail") as run:
        assert await run.exit_code() == 2
    assert "follower pipelines" in "\n".join(run.stderr)


async def test_pipelines_json_and_wide_piped() -> None:
    """-o json: one object per pipeline with phase and replicas; -o wide: the UID column."""
    async with served() as sim:
        async with follower("pipelines", "-o", "json", "--base-url", sim.base_url) as run:
            assert await run.exit_code() == 0
        async with follower("pipelines", "-o", "wide", "--base-url", sim.base_url) as wide:
            assert await wide.exit_code() == 0
    rows = json.loads("\n".join(run.stdout))
    assert {row["id"] for row in rows} == set(sim.world.pipeline_ids)
    assert all(row["phase"] == "RUNNING" and row["replicas"] == 2 for row in rows)
    assert all(row["uid"] == sim.world.uid(row["id"]) for row in rows)
    assert wide.stdout[0].split()[-1] == "UID"
    assert all(line.split()[-1] == sim.world.uid(line.split()[0])
               for line in wide.stdout[1:] if line)


# --- on a pseudo-terminal ------------------------------------------------------------------------


async def test_new_flags_on_a_terminal() -> None:
    """On a TTY: --pod, --tail, -t and short prefixes, in the pod's colour."""
    async with served() as sim:
        pipeline_id = sim.world.pipeline_ids[0]
        pods = sim.world.pod_names(pipeline_id, sim.world.start + 5.0)
        wanted = short_pod(pipeline_id, pods[1])
        text = await run_on_a_terminal(
            ["tail", "-p", pipeline_id, "--base-url", sim.base_url, "--pod", re.escape(pods[1]),
             "--tail", "2", "-t", "--interval", "0.2"], {},
        )
    plain = ANSI.sub("", text)
    shown = [line for line in plain.splitlines() if " | " in line]
    assert shown and {line.split(" ")[1] for line in shown} == {wanted}
    assert first_poll_lines(shown) == {wanted: 2}
    assert "\x1b[" in text


async def test_json_output_and_pipelines_on_a_terminal() -> None:
    """-o json on a TTY is still one JSON event per line; `pipelines -o wide` on a TTY too."""
    async with served() as sim:
        text = await run_on_a_terminal(
            ["tail", sim.world.pipeline_ids[0], "--base-url", sim.base_url, "-o", "json",
             "--tail", "-1", "--interval", "0.2"], {}, marker=b'"event":"log"',
        )
        table = await run_on_a_terminal(
            ["pipelines", "-o", "wide", "--base-url", sim.base_url], {}, marker=None,
        )
    events = [json.loads(line) for line in text.replace("\r\n", "\n").splitlines() if line]
    assert {e["pipeline_id"] for e in events} == {sim.world.pipeline_ids[0]}
    assert "UID" in table.splitlines()[0]


@pytest.mark.parametrize("output", ["text", "json"])
async def test_demo_into_a_closed_pipe_exits_0_silently(output: str) -> None:
    """`follower demo | head -n 3`: once the reader leaves, exit 0 and nothing on stderr but the
    demo's own introduction, like tail (was exit 1 with a traceback)."""
    got, code, stderr = await head_of(
        ["demo", "--duration", "60", "--output", output], env_with()
    )
    assert len(got) == 3 and all(got)
    assert code == 0
    assert [line for line in stderr.splitlines() if not line.startswith(b"demo: ")] == []
