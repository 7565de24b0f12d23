"""Assembles the daemon from a Config: one HTTP session, the client, the runner, the sink.

Kept apart from the CLI so tests (and embedders) run the real assembly with a fake clock or an
in-memory sink, without argument parsing or process signals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import sys
from collections.abc import Callable
from typing import Any, Final

import aiohttp
import anyio
import structlog

from follower import __version__
from follower.api.client import PipelineApi, create_session
from follower.api.secret import ServiceKey, remember
from follower.clock import Clock
from follower.config import Config, SourceConfig, read_key_file
from follower.core.tail_errors import TailErrorMatcher
from follower.engine import checkpoint, journal
from follower.engine.poller import PollStats
from follower.engine.runner import Runner
from follower.engine.settings import Checkpointer, RunSettings
from follower.engine.sources import Source, SourceSettings
from follower.errors import SinkClosedError
from follower.ops.server import ops_server
from follower.sinks import Sink
from follower.sinks.files import FileSink
from follower.sinks.jsonlines import JsonLinesSink


def run_settings(config: Config) -> RunSettings:
    """The loop's settings: the configuration's sections, as they are."""
    return RunSettings(
        interval_s=config.interval_s,
        since=config.since,
        max_in_flight=config.http.max_in_flight,
        backoff=config.backoff,
        shutdown_timeout_s=config.shutdown_timeout_s,
        checkpoint_interval_s=config.checkpoint_interval_s,
        schedule=config.schedule,
        shard=config.shard,
        lines=config.lines(),
    )


def source_settings(config: Config) -> tuple[SourceSettings, ...]:
    """Each source's selection and budget, as the runner takes them."""
    return tuple(source.settings for source in config.sources)


def state_file_checkpointer(config: Config, clock: Clock) -> Checkpointer | None:
    """Saves snapshots to the configured state file, off the event loop; None without one."""
    path = config.state_file
    if path is None:
        return None

    async def save(state: dict[str, checkpoint.Saved], mark: checkpoint.JournalMark | None) -> bool:
        data = checkpoint.encode(state, clock.wall(), mark)
        try:
            await anyio.to_thread.run_sync(checkpoint.save, path, data)
        except OSError as exc:  # disk full, folder gone: keep following, try again next time
            structlog.get_logger("follower").error(
                "checkpoint_failed", path=str(path), error=exc.strerror or str(exc)
            )
            return False
        return True

    return save


class KeyHolder:
    """The current ServiceKey; with a key file, re-read when the file changes (key rotation)."""

    def __init__(self, source: SourceConfig) -> None:
        self._key = source.key
        self._file = source.key_file
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int] | None:
        if self._file is None:
            return None
        try:
            stat = self._file.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def rejected(self) -> None:
        """The API answered 401: read the key file again before the next request."""
        self._stamp = None

    def __call__(self) -> ServiceKey:
        stamp = self._file_stamp()
        if self._file is not None and stamp is not None and stamp != self._stamp:
            log = structlog.get_logger("follower")
            try:
                key = ServiceKey(read_key_file(self._file))
            except ValueError as exc:
                log.error("service_key_reload_failed", error=str(exc))
            else:
                if key != self._key:
                    self._key = key
                    remember(key)  # diagnostics mask the new key too
                    log.info("service_key_reloaded")
            self._stamp = stamp
        return self._key


def build_sink(config: Config, clock: Clock) -> Sink:
    """The sink the configuration asks for: JSON Lines on stdout, or rotated files.

    The one place that knows the sink classes. Raises SinkClosedError when stdout is closed,
    OutputFolderError when the folder cannot be used.
    """
    output = config.output
    if output.kind == "file" and output.dir is not None:
        return FileSink(
            output.dir,
            clock=clock,
            layout=output.layout,
            max_bytes=output.max_bytes,
            max_files=output.max_files,
            fsync=output.fsync,
            fsync_interval_s=output.fsync_interval_s,
            max_line_bytes=output.max_line_bytes,
        )
    if sys.stdout is None:  # started with stdout closed (`>&-`): Python leaves it None
        raise SinkClosedError("stdout is not open (closed by whoever started the follower)")
    return JsonLinesSink(sys.stdout.buffer, max_line_bytes=output.max_line_bytes)


# Settings a reload cannot change in a running process: they shape the HTTP client, the sink or
# the servers. A reload that changes one says so and keeps the running value.
# Named by their place in the tree (`Config.key_file` is the file's `service_key_file`).
RESTART_ONLY: Final = (
    "base_url", "key_file", "state_file", "ops.listen", "output.kind", "output.dir",
    "output.layout", "output.max_bytes", "output.max_files", "output.fsync", "http.timeout_s",
    "http.max_response_bytes", "http.allow_insecure_http", "logging.level",
)


def _get(config: Config, dotted: str) -> Any:
    section, _, name = dotted.partition(".")
    value = getattr(config, section)
    return getattr(value, name) if name else value


def _keep(new: Config, running: Config, dotted: str) -> Config:
    """`new` with the running value of setting `dotted`."""
    section, _, name = dotted.partition(".")
    if not name:
        return dataclasses.replace(new, **{section: getattr(running, section)})
    kept = dataclasses.replace(getattr(new, section), **{name: _get(running, dotted)})
    return dataclasses.replace(new, **{section: kept})


async def reload(runner: Runner, running: Config, new: Config) -> Config:
    """Apply `new` to a running follower; returns the configuration now in force."""
    log = structlog.get_logger("follower")
    fixed = [name for name in RESTART_ONLY if _get(running, name) != _get(new, name)]
    if [s.identity for s in running.sources] != [s.identity for s in new.sources]:
        fixed.append("sources")  # a source has its own key and client: added at start only
    if fixed:
        log.warning("reload_needs_restart", keys=fixed, action="kept the running values")
        for name in fixed:
            if name != "sources":
                new = _keep(new, running, name)
    added, removed = await runner.reconfigure(
        run_settings(new), source_settings(new), TailErrorMatcher(new.tail_errors.patterns)
    )
    log.info("config_reloaded", added=len(added), removed=len(removed),
             followed=len(runner.followed))
    return new


def make_api(
    config: Config, session: aiohttp.ClientSession, clock: Clock, source: SourceConfig | None = None
) -> PipelineApi:
    """The API client of `source` (by default the configuration's first), on `session`."""
    source = source or config.sources[0]
    holder = KeyHolder(source)
    return PipelineApi(
        session,
        base_url=source.base_url,
        key=holder,
        on_unauthorized=holder.rejected,
        timeout_s=config.http.timeout_s,
        max_response_bytes=config.http.max_response_bytes,
        clock=clock,
    )


async def follow(
    config: Config,
    *,
    sink: Sink,
    clock: Clock,
    stop: anyio.Event,
    rng: random.Random | None = None,
    reset_state: bool = False,
    on_runner: Callable[[Runner], None] | None = None,
) -> PollStats:
    """Follow the configured pipelines until `stop` is set or none is left; close the sink.

    With a state file, start from the saved state (unless `reset_state`) and checkpoint to it;
    a damaged state file raises `StateFileError` before any request.
    """
    with contextlib.ExitStack() as held:
        restored = None
        if config.state_file is None and config.state_file_default:
            structlog.get_logger("follower").warning(
                "state_disabled",
                reason="no default state location: neither XDG_STATE_HOME nor HOME is set",
                hint="pass --state-file PATH (or set GOLDRUSH_STATE_FILE); until then a restart "
                "emits the tails again",
            )
        new_journal = None
        if config.state_file is not None:
            held.enter_context(
                checkpoint.claimed(config.state_file, create_folder=config.state_file_default)
            )
            if not reset_state:
                restored = journal.restore_state(config.state_file, clock.wall())
            new_journal = journal.start(config.state_file)
            held.callback(new_journal.close)
        return await _follow(
            config, sink=sink, clock=clock, stop=stop, rng=rng, restored=restored,
            reset_state=reset_state, on_runner=on_runner, new_journal=new_journal,
        )



async def _follow(
    config: Config,
    *,
    sink: Sink,
    clock: Clock,
    stop: anyio.Event,
    rng: random.Random | None,
    restored: dict[str, checkpoint.Saved] | None,
    reset_state: bool,
    on_runner: Callable[[Runner], None] | None,
    new_journal: journal.Journal | None,
) -> PollStats:
    session = create_session(user_agent=f"goldrush-follower/{__version__}")
    try:
        sources = [
            Source(make_api(config, session, clock, source), source.settings)
            for source in config.sources
        ]
        runner = Runner(
            sources=sources,
            sink=sink,
            clock=clock,
            settings=run_settings(config),
            matcher=TailErrorMatcher(config.tail_errors.patterns),
            rng=rng,
            restored=restored,
            reset_state=reset_state,
            checkpointer=state_file_checkpointer(config, clock),
            journal=new_journal,
        )
        if on_runner is not None:
            on_runner(runner)
        if config.ops.listen is None:
            return await runner.run(stop)
        host, port = config.ops.listen
        async with ops_server(runner, host, port) as url:
            structlog.get_logger("follower").info("ops_server_listening", url=url)
            return await runner.run(stop)
    finally:
        with anyio.CancelScope(shield=True):
            await sink.aclose()
            await session.close()
