"""The simulated world: pipelines, pods, restarts and log lines, computed lazily from time.

Nothing runs in the background and no history is stored. Every fact is a pure function of the
seed and a time `now` (seconds on the caller's monotonic clock):

- Pod (pipeline p, replica r) lives through incarnations k = 0, 1, ... With `restart_every_s = E`,
  time is cut into epochs of length E from the world's base; epoch j - 1 holds restart j at a seeded
  point in its middle 80 %, so the incarnation at `now` is found in O(1) and restarts are on average
  E apart (between 0.2 E and 1.8 E).
- Incarnation k starts at its restart, shows a tail error for `tail_error_s`, then writes line i at
  `run + (i + phase) / rate`, so the count of lines by `now` is one floor().
- The text of a line is a hash of (seed, p, r, k, i); the tail is the last `window` lines.
- Real pods' edges, each opt-in: `open_lines` shows the line being written as an open last
  segment (a prefix growing with time, no newline after it); `final_newline = False` joins the
  lines without a newline after the last one; `progress_bars` makes some lines `\r`-rewritten
  progress bars; `vanish_ratio` leaves a pod out of the answers of some one-second slots, as an
  API hiccup would.

Size: over 300 lines because it is one world model whose every fact is a function of the seed
and the time: incarnations, line times, texts and windows build on each other's arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, TypedDict

from follower.simulator import text

LineStyle = Literal["realistic", "unique", "repetitive"]

# Domains that keep the hashes of different facts independent.
_ID: Final = 1
_META: Final = 2
_RANK: Final = 3
_NAME: Final = 4
_RESTART: Final = 5
_PHASE: Final = 6
_LINE: Final = 7
_VANISH: Final = 8


@dataclass(frozen=True, slots=True)
class SimSettings:
    """What the simulated world looks like; every choice is reproducible from `seed`."""

    pipelines: int = 5
    pods: int = 2
    """Replicas per pipeline."""
    rate: float = 2.0
    """Mean lines per second per pod."""
    rate_skew: float = 0.0
    """0: every pipeline at `rate`; > 0: Zipf exponent of per-pipeline rates (mean ~`rate`)."""
    window: int = 100
    """Lines the tail holds: the API returns at most this many latest lines per pod."""
    restart_every_s: float | None = None
    """Mean seconds between restarts of a pod; None: never."""
    replace_on_restart: bool = False
    """A restart brings a new pod name (Kubernetes replacement) instead of a reset tail."""
    tail_error_s: float = 0.0
    """After each (re)start, `logs` is a tail error for this long and no lines are written."""
    line_style: LineStyle = "realistic"
    seed: int = 0
    backlog_s: float = 0.0
    """Pods started this long before the world's start, so the first tails may already be full."""
    open_lines: bool = False
    """The tail ends with the line being written, as far as it got (no newline after it)."""
    final_newline: bool = True
    """False: `logs` joins the lines without a newline after the last one."""
    progress_bars: bool = False
    """About one line in eight is a progress bar rewritten with carriage returns."""
    vanish_ratio: float = 0.0
    """Share of one-second slots in which an answer leaves a pod out (the pod still runs)."""

    def __post_init__(self) -> None:
        problems = []
        if self.pipelines < 0:
            problems.append(f"pipelines must be >= 0, got {self.pipelines}")
        if self.pods < 0:
            problems.append(f"pods must be >= 0, got {self.pods}")
        if not self.rate > 0 or math.isinf(self.rate):
            problems.append(f"rate must be a positive number, got {self.rate}")
        if not self.rate_skew >= 0:
            problems.append(f"rate_skew must be >= 0, got {self.rate_skew}")
        if self.window < 1:
            problems.append(f"window must be >= 1, got {self.window}")
        if self.restart_every_s is not None and not self.restart_every_s > 0:
            problems.append(f"restart_every_s must be > 0 or None, got {self.restart_every_s}")
        if not self.tail_error_s >= 0:
            problems.append(f"tail_error_s must be >= 0, got {self.tail_error_s}")
        if self.line_style not in ("realistic", "unique", "repetitive"):
            problems.append(
                f"line_style must be realistic, unique or repetitive, not {self.line_style!r}"
            )
        if not self.backlog_s >= 0:
            problems.append(f"backlog_s must be >= 0, got {self.backlog_s}")
        if not 0 <= self.vanish_ratio < 1:
            problems.append(f"vanish_ratio must be in [0, 1), got {self.vanish_ratio}")
        if problems:
            raise ValueError("invalid simulator settings: " + "; ".join(problems))


class PipelineJson(TypedDict):
    """A pipeline object as the list and get endpoints return it."""

    id: str
    name: str
    project: str
    description: str
    topic: str
    destination_type: str
    status: str
    created_at: str
    updated_at: str


class StatusJson(TypedDict):
    """The `data` of the status endpoint: the runtime phase."""

    uid: str
    status: str
    replicas: int
    ready: int
    start_time: str


@dataclass(frozen=True, slots=True)
class PodWindow:
    """What one pod's tail holds at a moment: lines [first, end) of an incarnation, or an error."""

    pod: str
    replica: int
    incarnation: int
    first: int
    end: int
    error: str | None
    written: float = 0.0
    """How much of line `end` is written (0 <= written < 1), shown with `open_lines`."""


@dataclass(frozen=True, slots=True)
class _Pipeline:
    index: int
    id: str
    uid: str
    info: PipelineJson
    pod_base: str
    rate: float
    destination: str
    block0: int
    block_time_s: float
    name_mul: int
    name_mul_inv: int
    name_add: int


@dataclass(frozen=True, slots=True)
class _Incarnation:
    replica: int
    number: int
    name: str
    start: float
    end: float
    run: float
    """When the tail error phase ends and line 0 may be written."""
    phase: float
    key: int


class World:
    """The lazily computed state of every simulated pipeline (pure: `now` is an argument)."""

    def __init__(self, settings: SimSettings, start: float, wall_at_start: float) -> None:
        self.settings = settings
        self.start = start
        self.wall_at_start = wall_at_start
        self._base = start - settings.backlog_s
        seed = settings.seed
        count = settings.pipelines
        ranks = sorted(range(count), key=lambda p: text.hash_ids(seed, _RANK, p))
        weights = [0.0] * count
        for rank, p in enumerate(ranks):
            weights[p] = (rank + 1) ** -settings.rate_skew
        scale = settings.rate * count / sum(weights) if count else 0.0
        self._pipelines = [self._make_pipeline(p, weights[p] * scale) for p in range(count)]
        self._by_id = {pl.id: pl for pl in self._pipelines}
        if len(self._by_id) != count:  # 108-bit ids: never, but a silent merge would be worse
            raise RuntimeError("pipeline id collision; choose another seed")
        self.pipeline_ids: list[str] = [pl.id for pl in self._pipelines]

    def _make_pipeline(self, p: int, rate: float) -> _Pipeline:
        seed = self.settings.seed
        raw = (text.hash_ids(seed, _ID, p, 0) << 64) | text.hash_ids(seed, _ID, p, 1)
        pipeline_id = "pipe_" + f"{raw:032x}"[:27]
        meta = text.hash_ids(seed, _META, p)
        chain, block0, block_time_s = text.CHAINS[meta % len(text.CHAINS)]
        dataset = text.DATASETS[(meta >> 8) % len(text.DATASETS)]
        destination = text.DESTINATIONS[(meta >> 16) % len(text.DESTINATIONS)]
        project = text.PROJECTS[(meta >> 24) % len(text.PROJECTS)]
        created = self.wall_at_start - 86_400.0 * (1 + 90 * text.unit(text.hash_ids(meta, 1)))
        updated = created + (self.wall_at_start - created) * text.unit(text.hash_ids(meta, 2))
        uid = f"covalent-{destination}-{pipeline_id.replace('_', '-')}"
        info: PipelineJson = {
            "id": pipeline_id,
            "name": f"{chain}-{dataset}-{destination}-{p + 1}",
            "project": project,
            "description": f"Streams {dataset} from {chain} into {destination}.",
            "topic": f"{chain}.{dataset}",
            "destination_type": destination,
            "status": "running",
            "created_at": text.iso_seconds(created),
            "updated_at": text.iso_seconds(updated),
        }
        names = text.hash_ids(seed, _NAME, p)
        mul = (names % (text.SUFFIX_SPACE // 3)) * 3 + 1  # not a multiple of 3: invertible
        return _Pipeline(
            index=p,
            id=pipeline_id,
            uid=uid,
            info=info,
            pod_base=("pipeline-" + uid)[: text.MAX_BASE_LEN],
            rate=rate,
            destination=destination,
            block0=block0,
            block_time_s=block_time_s,
            name_mul=mul,
            name_mul_inv=pow(mul, -1, text.SUFFIX_SPACE),
            name_add=(names >> 32) % text.SUFFIX_SPACE,
        )

    # --- the API's view -------------------------------------------------------------------------

    def info(self, pipeline_id: str) -> PipelineJson:
        """The pipeline object of the list and get endpoints (KeyError for an unknown id)."""
        return self._by_id[pipeline_id].info.copy()

    def uid(self, pipeline_id: str) -> str:
        """The runtime uid the status and logs endpoints report."""
        return self._by_id[pipeline_id].uid

    def rate(self, pipeline_id: str) -> float:
        """Lines per second each pod of the pipeline writes (after `rate_skew`)."""
        return self._by_id[pipeline_id].rate

    def status(self, pipeline_id: str, now: float) -> StatusJson:
        """The runtime phase: DEPLOYING while some pod is in its tail-error phase, else RUNNING."""
        pl = self._by_id[pipeline_id]
        windows = self.windows(pipeline_id, now)
        ready = sum(1 for window in windows if window.error is None)
        return {
            "uid": pl.uid,
            "status": "RUNNING" if ready == len(windows) else "DEPLOYING",
            "replicas": len(windows),
            "ready": ready,
            "start_time": text.iso_seconds(self._wall(self._base)),
        }

    def windows(self, pipeline_id: str, now: float) -> list[PodWindow]:
        """Each pod's tail at `now` as line ranges of its current incarnation (O(pods))."""
        pl = self._by_id[pipeline_id]
        result = []
        for replica in range(self.settings.pods):
            inc = self._incarnation(pl, replica, self._current(pl, replica, now))
            if now < inc.run:
                number = pl.index + replica + inc.number  # successive restarts cycle messages
                result.append(
                    PodWindow(
                        inc.name, replica, inc.number, 0, 0, text.tail_error(number, inc.name)
                    )
                )
                continue
            end = self._written(pl, inc, now)
            first = max(0, end - self.settings.window)
            written = 0.0
            if self.settings.open_lines and now < inc.end:
                due = inc.run + (end + inc.phase) / pl.rate  # when line `end` is complete
                written = min(max(0.0, 1.0 - (due - now) * pl.rate), 0.999)
            result.append(PodWindow(inc.name, replica, inc.number, first, end, None, written))
        return result

    def answered(self, pipeline_id: str, now: float) -> list[PodWindow]:
        """The pods a logs answer at `now` lists: all, but those `vanish_ratio` leaves out."""
        windows = self.windows(pipeline_id, now)
        ratio = self.settings.vanish_ratio
        if ratio <= 0:
            return windows
        pl = self._by_id[pipeline_id]
        slot = math.floor(now - self.start)
        seed = self.settings.seed
        return [
            w for w in windows
            if text.unit(text.hash_ids(seed, _VANISH, pl.index, w.replica, slot)) >= ratio
        ]

    def logs(self, pipeline_id: str, now: float) -> list[tuple[str, str]]:
        """[(pod, logs)]: each answered pod's last `window` lines, or its tail error."""
        return [(w.pod, self.tail_text(pipeline_id, w)) for w in self.answered(pipeline_id, now)]

    def tail_text(self, pipeline_id: str, window: PodWindow) -> str:
        """The `logs` string of a pod's window: its lines (newline-terminated unless
        `final_newline` is off), then the open line when shown; or its tail error."""
        if window.error is not None:
            return window.error
        lines = self.segment(
            pipeline_id, window.replica, window.incarnation, window.first, window.end
        )
        if window.written > 0:
            (writing,) = self.segment(
                pipeline_id, window.replica, window.incarnation, window.end, window.end + 1
            )
            shown = writing[: int(len(writing) * window.written)]
            if shown:
                lines.append(shown)
                return "\n".join(lines)
        if not lines:
            return ""
        return "\n".join(lines) + ("\n" if self.settings.final_newline else "")

    # --- the truth ------------------------------------------------------------------------------

    def segment(
        self, pipeline_id: str, replica: int, incarnation: int, first: int, end: int
    ) -> list[str]:
        """Lines [first, end) of one incarnation of a pod."""
        pl = self._by_id[pipeline_id]
        inc = self._incarnation(pl, replica, incarnation)
        key = inc.key
        style = self.settings.line_style
        line_hash = text.line_hash
        if self.settings.progress_bars:
            lines = self._plain_segment(pl, inc, style, first, end)
            return [
                text.progress_line(line_hash(key, i)) if line_hash(key, i) % 8 == 0 else line
                for i, line in zip(range(first, end), lines, strict=True)
            ]
        return self._plain_segment(pl, inc, style, first, end)

    def _plain_segment(
        self, pl: _Pipeline, inc: _Incarnation, style: LineStyle, first: int, end: int
    ) -> list[str]:
        key, incarnation = inc.key, inc.number
        line_hash = text.line_hash
        if style == "unique":
            return [text.unique_line(line_hash(key, i), incarnation, i) for i in range(first, end)]
        if style == "repetitive":
            return [text.repetitive_line(line_hash(key, i)) for i in range(first, end)]
        realistic_line = text.realistic_line
        destination = pl.destination
        wall0 = self._wall(inc.run + inc.phase / pl.rate)
        step = 1.0 / pl.rate
        block0 = pl.block0 - text.BLOCK_EPOCH / pl.block_time_s
        blocks_per_s = 1.0 / pl.block_time_s
        lines = []
        for i in range(first, end):
            wall = wall0 + i * step
            block = int(block0 + wall * blocks_per_s)
            lines.append(realistic_line(line_hash(key, i), i, wall, block, destination))
        return lines

    def lines(self, pipeline_id: str, pod: str, until: float) -> list[str]:
        """Every line the pod name wrote up to `until`, all its incarnations in order."""
        return [line for _, lines in self.history(pipeline_id, pod, until) for line in lines]

    def history(self, pipeline_id: str, pod: str, until: float) -> list[tuple[int, list[str]]]:
        """[(incarnation, its lines)] of the pod name up to `until`, oldest first: `lines()` cut
        where each incarnation starts, so a line shown by an answer can be placed in it even
        when its text repeats (progress bars)."""
        pl = self._by_id[pipeline_id]
        found = self._decode(pl, pod)
        if found is None:
            return []
        replica, only = found
        current = self._current(pl, replica, until)
        numbers = range(current + 1) if only is None else [only] if only <= current else []
        result = []
        for number in numbers:
            inc = self._incarnation(pl, replica, number)
            end = self._written(pl, inc, until)
            result.append((number, self.segment(pipeline_id, replica, number, 0, end)))
        return result

    def pod_names(self, pipeline_id: str, until: float) -> list[str]:
        """Every pod name that existed up to `until`, in order of first appearance."""
        pl = self._by_id[pipeline_id]
        seen: dict[str, tuple[float, int]] = {}
        for replica in range(self.settings.pods):
            numbers = range(self._current(pl, replica, until) + 1)
            if not self.settings.replace_on_restart:
                numbers = range(1)
            for number in numbers:
                inc = self._incarnation(pl, replica, number)
                seen.setdefault(inc.name, (inc.start, replica))
        return sorted(seen, key=seen.__getitem__)

    def restarts(self, pipeline_id: str, replica: int, until: float) -> list[float]:
        """When the replica restarted up to `until` (monotonic seconds), oldest first."""
        pl = self._by_id[pipeline_id]
        current = self._current(pl, replica, until)
        return [self._incarnation(pl, replica, number).start for number in range(1, current + 1)]

    def line_clock(self, pipeline_id: str, pod: str, incarnation: int) -> tuple[float, float]:
        """(wall time line 0 of an incarnation of `pod` is written, seconds between its lines).

        Line i is written at `first + i * step`, so a benchmark can tell each line's write time
        from its index without keeping a history (KeyError/ValueError for an unknown pod).
        """
        pl = self._by_id[pipeline_id]
        decoded = self._decode(pl, pod)
        if decoded is None:
            raise ValueError(f"{pod!r} is not a pod of {pipeline_id}")
        inc = self._incarnation(pl, decoded[0], incarnation)
        return self._wall(inc.run + inc.phase / pl.rate), 1.0 / pl.rate

    # --- the schedule ---------------------------------------------------------------------------

    def _wall(self, t: float) -> float:
        return self.wall_at_start + (t - self.start)

    def _restart_at(self, pl: _Pipeline, replica: int, number: int) -> float:
        """When restart `number` (>= 1) of the replica happens: inside epoch number - 1."""
        every = self.settings.restart_every_s
        if every is None:
            return math.inf
        u = text.unit(text.hash_ids(self.settings.seed, _RESTART, pl.index, replica, number))
        return self._base + (number - 1 + 0.1 + 0.8 * u) * every

    def _current(self, pl: _Pipeline, replica: int, now: float) -> int:
        """The number of the incarnation alive at `now` (0 before the first restart)."""
        every = self.settings.restart_every_s
        if every is None or now < self._base:
            return 0
        epoch = int((now - self._base) // every)
        return epoch + 1 if now >= self._restart_at(pl, replica, epoch + 1) else epoch

    def _incarnation(self, pl: _Pipeline, replica: int, number: int) -> _Incarnation:
        start = self._base if number == 0 else self._restart_at(pl, replica, number)
        key = text.hash_ids(self.settings.seed, _LINE, pl.index, replica, number)
        pods = self.settings.pods
        serial = number * pods + replica if self.settings.replace_on_restart else replica
        suffix = text.scramble(serial, pl.name_mul, pl.name_add)
        return _Incarnation(
            replica=replica,
            number=number,
            name=pl.pod_base + text.encode_suffix(suffix),
            start=start,
            end=self._restart_at(pl, replica, number + 1),
            run=start + self.settings.tail_error_s,
            phase=text.unit(text.hash_ids(self.settings.seed, _PHASE, pl.index, replica, number)),
            key=key,
        )

    def _written(self, pl: _Pipeline, inc: _Incarnation, now: float) -> int:
        """How many lines the incarnation wrote by `now`."""
        t = min(now, inc.end)
        if t < inc.run:
            return 0
        return max(0, math.floor((t - inc.run) * pl.rate - inc.phase) + 1)

    def _decode(self, pl: _Pipeline, pod: str) -> tuple[int, int | None] | None:
        """(replica, incarnation or None for all) of a pod name of this pipeline, else None."""
        if not pod.startswith(pl.pod_base) or self.settings.pods == 0:
            return None
        suffix = text.decode_suffix(pod[len(pl.pod_base) :])
        if suffix is None:
            return None
        serial = text.unscramble(suffix, pl.name_mul_inv, pl.name_add)
        if self.settings.replace_on_restart:
            return serial % self.settings.pods, serial // self.settings.pods
        return (serial, None) if serial < self.settings.pods else None
