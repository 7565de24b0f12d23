"""A real shipper on the file sink: rsyslog's imfile, with examples/rsyslog, across rotations.

rsyslogd runs in the foreground on a temporary folder with the example configuration as shipped,
only its paths and its forwarding action swapped for a temporary folder and a local file that
receives each message raw. The follower's stream is written through FileSink with a small
max_bytes, so the live file is renamed several times while rsyslog reads it.
"""

from __future__ import annotations

import re
import shutil
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import orjson
import pytest

from follower.clock import SystemClock
from follower.core.events import Event, LogEvent, PodAddedEvent
from follower.sinks.files import FileSink

RSYSLOGD = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")
pytestmark = pytest.mark.skipif(
    RSYSLOGD is None,
    reason="rsyslogd is not installed (Debian package rsyslog; .ci/run installs it)",
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "rsyslog" / "goldrush-follower.conf"
EXAMPLE_DIR = "/var/log/goldrush-follower"
FORWARD_ACTION = re.compile(r'(?s)action\(\s*type="omfwd".*?\n  \)')
P = "pipe_3e8678c5fc9e48a7bf9879ca729"
POD = "pipeline-covalent-postgres-mlm2"
TIMEOUT_S = 60.0
MAX_BYTES = 8_192


def configure(tmp_path: Path, events_dir: Path, shipped: Path) -> Path:
    """The example as shipped, pointed at `events_dir`, forwarding into the file `shipped`."""
    text = EXAMPLE.read_text()
    assert EXAMPLE_DIR in text
    text = text.replace(EXAMPLE_DIR, str(events_dir))
    text, replaced = FORWARD_ACTION.subn(
        f'action(type="omfile" file="{shipped}" template="goldrush_follower_json")', text
    )
    assert replaced == 1, "the example's forwarding action was not found"
    example = tmp_path / "goldrush-follower.conf"
    example.write_text(text)
    work = tmp_path / "work"  # imfile's reading positions
    work.mkdir()
    main = tmp_path / "rsyslog.conf"
    main.write_text(f'global(workDirectory="{work}")\ninclude(file="{example}")\n')
    return main


@asynccontextmanager
async def rsyslogd(config: Path, tmp_path: Path) -> AsyncIterator[anyio.abc.Process]:
    """rsyslogd in the foreground on `config`; stopped (and reaped) on the way out."""
    assert RSYSLOGD is not None
    command = [RSYSLOGD, "-n", "-f", str(config), "-i", str(tmp_path / "rsyslogd.pid")]
    process = await anyio.open_process(command, stdout=None, stderr=None)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with anyio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


def shipped_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines() if path.exists() else []


async def wait_for_line(path: Path, wanted: bytes, process: anyio.abc.Process) -> list[bytes]:
    """Poll `path` until it holds the line `wanted`; fail after TIMEOUT_S or if rsyslogd died."""
    clock = SystemClock()
    deadline = clock.monotonic() + TIMEOUT_S
    while True:
        lines = shipped_lines(path)
        if wanted in lines:
            return lines
        assert process.returncode is None, f"rsyslogd exited with {process.returncode}"
        assert clock.monotonic() < deadline, (
            f"rsyslog shipped {len(lines)} lines in {TIMEOUT_S:.0f} s, not {wanted[:80]!r}"
        )
        await clock.sleep(0.05)


def the_stream(count: int) -> list[Event]:
    """Log events with quotes, UTF-8, DEL, a few long lines and one longer than a whole file."""
    events: list[Event] = [PodAddedEvent(1.8e9, P, POD)]
    for seq in range(1, count + 1):
        text = f'line {seq} "q" caf\u00e9 \U0001f600 del\x7f tab\t ' + "x" * (seq * 37 % 700)
        if seq % 150 == 0:
            text += "L" * 3000
        if seq == count // 2:
            text += "H" * MAX_BYTES  # alone in a file of its own
        events.append(LogEvent(1.8e9 + seq, P, POD, seq, text))
    return events


def encoded(event: Event) -> bytes:
    return orjson.dumps(event.to_wire())


def rotated_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("events.jsonl.*"))


async def test_rsyslog_ships_every_event_exactly_once_across_rotations(tmp_path: Path) -> None:
    """imfile in inotify mode, per the example: every event arrives once, whole, in order."""
    events_dir, shipped = tmp_path / "events", tmp_path / "shipped.jsonl"
    config = configure(tmp_path, events_dir, shipped)
    stream = the_stream(1200)
    sink = FileSink(events_dir, clock=SystemClock(), max_bytes=MAX_BYTES, max_files=1000,
                    fsync="never")
    async with rsyslogd(config, tmp_path) as process:
        # rsyslog watches the folder once this first event comes out the other end.
        await sink.write(stream[:1])
        await wait_for_line(shipped, encoded(stream[0]), process)
        for start in range(1, len(stream), 40):  # one batch per poll, as fast as it goes
            await sink.write(stream[start : start + 40])
        end = LogEvent(1.9e9, P, POD, len(stream), "end of stream")
        await sink.write([end])
        lines = await wait_for_line(shipped, encoded(end), process)
    await sink.aclose()

    assert len(rotated_files(events_dir)) >= 2, rotated_files(events_dir)
    counts = Counter(lines)
    assert [line for line, n in counts.items() if n > 1] == []
    assert lines == [encoded(event) for event in [*stream, end]]
