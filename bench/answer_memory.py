"""Memory of one huge answer: the peak RSS of `follower run` polling answers of many tiny lines.

    PYTHONPATH=. python bench/answer_memory.py [--polls 3] [--cases blank,x,x-3mb,quotes]

A logs answer of 4 pods x 100,000 blank lines is an 800 KB body (each newline is `\\n` in JSON),
well within the 8 MiB body cap, yet it is 400,000 events in one poll. This script serves such
answers on loopback (every answer with new pod names, so every line of every answer is new) to
a real `follower run` process whose stdout is a pipe this script drains (the thread path of
the stdout sink, as under Docker or a shell pipe), waits until the follower has finished
`--polls` polls (it asked for the next answer), reads the process's peak RSS (VmHWM), and stops
it with SIGTERM. It prints, per case: body size, events per poll, peak RSS, the longest line.

Cases: `blank` (4 pods x 100,000 empty lines), `x` (4 x 100,000 `x`), `x-3mb` (10 x 100,000
`x`: a 3 MB body, 1,000,000 events per poll), `quotes` (4 pods x 60 lines of 16 KiB of `"`: a
7.9 MB body, `"` being 2 bytes in JSON; each line is cut and its event fitted to 16 KiB),
`blank-8mib` (41 pods x 100,000 empty lines: the most events an 8 MiB body gives, since each
pod's tail is read to its last 100,000 lines).

The follower comes from this checkout unless PYTHONPATH names another one first (to measure an
older revision: `git archive REV follower | tar -x -C /tmp/old`, then PYTHONPATH=/tmp/old).

Exits 1 when a case of the default set peaks above `--max-mb` (250 MB).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

ROOT = Path(__file__).resolve().parent.parent
KEY = "answer-memory-bench-key"


@dataclass(frozen=True)
class Case:
    """Answers of `pods` pods, each with `lines` copies of `line` (newline added)."""

    pods: int
    lines: int
    line: str

    def body(self, answer: int) -> bytes:
        """The `answer`-th logs answer (pods named after it, so all its lines are new)."""
        tail = (self.line + "\n") * self.lines
        pods = [{"pod": f"pod-{answer}-{i}", "logs": tail} for i in range(self.pods)]
        return orjson.dumps({"data": {"uid": None, "pods": pods}, "error": False,
                             "error_message": None})


CASES = {
    "blank": Case(4, 100_000, ""),
    "x": Case(4, 100_000, "x"),
    "x-3mb": Case(10, 100_000, "x"),
    "quotes": Case(4, 60, '"' * 16_383),
    "blank-8mib": Case(41, 100_000, ""),
}
DEFAULT_CASES = "blank,x,x-3mb,quotes"


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(VmHWM, VmRSS) of process `pid` in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            found[line.split(":")[0]] = int(line.split()[1]) / 1024
    return found["VmHWM"], found["VmRSS"]


@dataclass
class Result:
    body_bytes: int
    events_per_poll: int
    peak_mb: float
    base_mb: float
    longest_line: int


async def measure(case: Case, polls: int) -> Result:
    """Serve `case` to a `follower run` process and measure it (see the module docstring).

    The run has a state file of its own: in the default place, a run would restore the pods an
    earlier run saw, whose names and tails these answers repeat, and emit nothing for them."""
    with tempfile.TemporaryDirectory() as folder:
        return await measure_with_state(case, polls, Path(folder) / "state.json")


async def measure_with_state(case: Case, polls: int, state_file: Path) -> Result:
    served = 0
    answered = anyio.Event()
    bodies: dict[int, bytes] = {}
    base: list[float] = []
    process_box: list[int] = []

    async def logs(request: web.Request) -> web.Response:
        nonlocal served, answered
        if request.path.endswith("/status/"):
            body = orjson.dumps({"data": {"status": "RUNNING", "replicas": 1, "ready": 1},
                                 "error": False, "error_message": None})
            return web.Response(body=body, content_type="application/json")
        if not base and process_box:
            base.append(peak_rss_mb(process_box[0])[1])  # before the first answer
        served += 1
        answered.set()
        answered = anyio.Event()
        body = bodies.pop(served, None) or case.body(served)
        bodies[served + 1] = case.body(served + 1)  # made while the follower works
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", logs)
    lines = events = longest = 0
    async with TestServer(app, host="127.0.0.1") as server:
        base_url = str(server.make_url("")).rstrip("/")
        env = dict(os.environ, GOLDRUSH_SERVICE_KEY=KEY,
                   PYTHONPATH=os.pathsep.join(
                       [*filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
                        str(ROOT)]))
        process = await anyio.open_process(
            [sys.executable, "-m", "follower", "run", "--base-url", base_url,
             "--pipeline", "pipe_bench", "--interval", "1",
             "--state-file", str(state_file)],
            env=env, stderr=subprocess.DEVNULL, cwd="/",  # `-m` puts the cwd first on the path
        )
        process_box.append(process.pid)

        async def drain() -> None:
            nonlocal lines, longest
            assert process.stdout is not None
            rest = b""
            async for chunk in process.stdout:
                parts = (rest + chunk).split(b"\n")
                rest = parts.pop()
                lines += len(parts)
                longest = max([longest, *map(len, parts)])

        async with anyio.create_task_group() as group:
            group.start_soon(drain)
            with anyio.fail_after(600):
                while served < polls + 1:  # the next request: the previous poll is done
                    await answered.wait()
                peak, _ = peak_rss_mb(process.pid)
                events = lines
                process.send_signal(signal.SIGTERM)
                await process.wait()
    return Result(len(case.body(1)), events // polls, peak, base[0] if base else 0.0, longest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--polls", type=int, default=3)
    parser.add_argument("--cases", default=DEFAULT_CASES,
                        help=f"comma-separated, of {', '.join(CASES)} (default {DEFAULT_CASES})")
    parser.add_argument("--max-mb", type=float, default=250.0)
    ns = parser.parse_args()
    print(f"{'case':<12} {'body':>9} {'events/poll':>12} {'base RSS':>9} {'peak RSS':>9} "
          f"{'longest line':>13}")
    failed = False
    report: Callable[[str], None] = print
    for name in ns.cases.split(","):
        result = anyio.run(measure, CASES[name], ns.polls)
        over = result.peak_mb > ns.max_mb
        failed |= over and name in DEFAULT_CASES.split(",")
        report(f"{name:<12} {result.body_bytes / 1e6:>7.2f}MB {result.events_per_poll:>12,} "
               f"{result.base_mb:>7.0f}MB {result.peak_mb:>7.0f}MB {result.longest_line:>12,}B"
               f"{'  over ' + str(ns.max_mb) + ' MB' if over else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
