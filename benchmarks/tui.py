"""Interface responsiveness during a large run: the real Textual app, headless at 80x24, on a real MariaDB.

    python -m benchmarks.tui                           # 1,000,000 enrolments (enrols-add), 6-10 min in all
    python -m benchmarks.tui --operation check         # 1,000,000 course existence checks, ~1 min
    python -m benchmarks.tui --lines 100000            # a smaller run
    python -m benchmarks.tui --key-every 0             # no keys: the run's own effect on the loop

The setup is benchmarks.run's: a case of benchmarks.run (`enrols-add`, `users-create` or `check`) starts the
throwaway MariaDB, loads the Moodle dump, seeds and generates its command file; the file is moved into the
configuration's inbox. Then a child process (started through benchmarks/measure.py, so its peak RSS is its own)
runs `ToolsyncApp` under `App.run_test(size=(80, 24))`, chooses the operation on the dashboard, presses `r`, and
while the run goes on measures what a user feels:

- event-loop lag: a task sleeping 20 ms in a loop, how late each wake-up is;
- key round-trip: every 0.5 s `?` opens the help and `?` closes it again. Half the cycles send the key event the
  way Pilot does and time until the first frame (compositor refresh) of the screen that shows the result; the
  other half time `pilot.press()` itself, which also sleeps until Textual thinks the process is idle;
- paint rate: every call of the run screen's painter (a 0.1 s timer), when it showed new counters (a new
  progress report of the engine), and the frames rendered while the run screen is on top;
- who holds the loop: every callback the event loop runs is timed and put down to its owner (the run's worker,
  a widget's message pump, a timer), with the stalls of 50 ms or more listed by owner; a thread samples the loop
  thread's stack every 10 ms while a callback runs, kept for the callbacks that turn out to be stalls (what the
  stalls were doing); and every garbage collection (gc.callbacks), which stops every thread whatever callback it
  lands in.

The same probes run for a few seconds on the idle dashboard first, for comparison. The run's outcome counts, its
report and tryback (and for enrols the database) are checked against the generated file, as benchmarks.run does.
The server is stopped whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import functools
import gc
import itertools
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the measured child imports none of the harness (its peak RSS is the interface's own)
    from textual.app import App
    from textual.pilot import Pilot
    from textual.screen import Screen

    from benchmarks.run import BenchCase, Prepared
    from tests.support.mariadb_server import ThrowawayMariaDB
    from toolsync_tui.app import ToolsyncApp

ROOT = str(Path(__file__).resolve().parents[1])
SIZE = (80, 24)
LAG_INTERVAL = 0.020  # seconds the lag probe sleeps
KEY_EVERY = 0.5  # seconds between key cycles (--key-every)
RESPONSIVE_MS = 100.0  # p99 key round-trip (key to frame) under this: "responsive"
STALL = 0.050  # a loop callback at least this long is a stall, listed with its owner
STALL_SAMPLE_EVERY = 0.010  # seconds between samples of the loop thread's stack during a stall
FRAME_TIMEOUT = 60.0  # a key whose frame does not come within this is recorded as lost
EXIT_VERIFIED, EXIT_MISMATCH, EXIT_BELOW_TARGET = 0, 1, 2

# --operation -> (the benchmarks.run case that sets it up, the case's size option, extra options for a size)
CASES: dict[str, tuple[str, str, Callable[[int], list[str]]]] = {
    "enrols": ("enrols-add", "--rows", lambda lines: []),
    "users": ("users-create", "--users", lambda lines: []),
    "check": ("check", "--lines", lambda lines: ["--courses", str(max(lines // 10, 1))]),
}


# -- the measured child: the interface under run_test ----------------------------------------------


@dataclass
class Phase:
    """What the probes saw during one phase (the idle dashboard, or the run)."""

    started: float = 0.0
    ended: float = 0.0
    lag: list[float] = field(default_factory=list)  # seconds late, per 20 ms sleep
    key_open: list[float] = field(default_factory=list)  # `?` sent -> first frame with the help, seconds
    key_close: list[float] = field(default_factory=list)  # `?` sent -> first frame without it, seconds
    key_pilot: list[float] = field(default_factory=list)  # pilot.press() duration, seconds
    keys_lost: int = 0
    cpu: float = 0.0  # user + system seconds of the interface process over the phase
    # The loop's callbacks by owner: [count, seconds in all, longest]; and each stall (start, seconds, owner).
    loop: dict[str, list[float]] = field(default_factory=dict)
    stalls: list[tuple[float, float, str]] = field(default_factory=list)
    collections: list[tuple[float, float, int]] = field(default_factory=list)  # (start, seconds, generation)
    # Stack samples taken during stalls: "owner | innermost toolsync (or Textual) function | innermost function".
    stalled_in: dict[str, int] = field(default_factory=dict)

    @property
    def key_frame(self) -> list[float]:
        return self.key_open + self.key_close


@dataclass
class Paint:
    at: float
    seconds: float  # the painter's own time
    lines_done: int
    rows_done: int
    new: bool  # a progress report the previous paint had not shown


@dataclass
class ChildReport:
    idle: Phase
    run: Phase
    paints: list[Paint]
    frames: list[float]  # compositor refreshes while the run screen was on top
    r_to_frame: float  # `r` sent -> first frame of the run screen
    rows: int
    counts: dict[str, int]
    engine_seconds: float
    error: str | None
    table_path: str | None
    tryback_path: str | None
    maxrss_before_run_mb: float
    maxrss_mb: float
    objects_before_run: int  # objects the garbage collector tracks
    objects_after_run: int
    textual: str


class FrameWatch:
    """Calls after every compositor refresh of the screen on top: a key's round-trip ends at the first frame whose
    top screen shows its effect."""

    def __init__(self) -> None:
        self.waiters: list[tuple[Callable[[Screen[Any]], bool], asyncio.Future[float]]] = []
        self.run_frames: list[float] = []

    def expect(self, shows: Callable[[Screen[Any]], bool]) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters.append((shows, future))
        return future

    def refreshed(self, screen: Screen[Any]) -> None:
        from toolsync_tui.screens.run import RunScreen

        if screen is not screen.app.screen:
            return
        now = time.perf_counter()
        if isinstance(screen, RunScreen):
            self.run_frames.append(now)
        keep = []
        for shows, future in self.waiters:
            if future.done():
                continue
            if shows(screen):
                future.set_result(now)
            else:
                keep.append((shows, future))
        self.waiters = keep


class GcWatch:
    """Every garbage collection of a phase: when, how long, which generation."""

    def __init__(self) -> None:
        self.phase: Phase | None = None
        self._started = 0.0

    def __call__(self, what: str, info: dict[str, int]) -> None:
        if what == "start":
            self._started = time.perf_counter()
        elif self.phase is not None:
            self.phase.collections.append((self._started, time.perf_counter() - self._started, int(info["generation"])))


class LoopAccount:
    """Every callback the interface's event loop runs (asyncio's Handle._run; not the engine's loop, in its own
    thread), timed and put down to its owner: for a task step, the run's worker, a node's message pump or a timer's
    callback; else the callback itself (e.g. a socket read)."""

    def __init__(self) -> None:
        self.phase: Phase | None = None
        self._labels: weakref.WeakKeyDictionary[asyncio.Task[Any], str] = weakref.WeakKeyDictionary()
        self.running = False  # a callback is running (the stall sampler samples only then)
        self.samples: list[str] = []  # the stall sampler's samples of the callback now running

    def install(self) -> None:
        run = asyncio.events.Handle._run
        account = self

        loop_thread = threading.get_ident()

        @functools.wraps(run)
        def timed_run(handle: asyncio.Handle) -> None:
            phase = account.phase
            if phase is None or threading.get_ident() != loop_thread:  # the engine's loop runs in a thread of its own
                run(handle)
                return
            label = account.label(getattr(handle, "_callback", None))
            samples: list[str] = []
            account.samples = samples
            account.running = True
            clock = time.perf_counter()
            run(handle)
            seconds = time.perf_counter() - clock
            account.running = False
            entry = phase.loop.get(label)
            if entry is None:
                phase.loop[label] = [1, seconds, seconds]
            else:
                entry[0] += 1
                entry[1] += seconds
                entry[2] = max(entry[2], seconds)
            if seconds >= STALL:
                phase.stalls.append((clock, seconds, label))
                for where in samples:
                    key = f"{label} | {where}"
                    phase.stalled_in[key] = phase.stalled_in.get(key, 0) + 1

        setattr(asyncio.events.Handle, "_run", timed_run)  # noqa: B010 (mypy refuses assigning to a method)

    def label(self, callback: object) -> str:
        task = getattr(callback, "__self__", None)
        if not isinstance(task, asyncio.Task):
            return str(getattr(callback, "__qualname__", type(callback).__name__))
        label = self._labels.get(task)
        if label is None:
            label = self._labels[task] = _task_label(task)
        return label


class StallSampler(threading.Thread):
    """While a loop callback runs, the loop thread's stack every STALL_SAMPLE_EVERY, kept by LoopAccount for the
    callbacks that turn out to be stalls: where the stalls spend their time. A sample stands for ~10 ms or more (the
    sampler needs the GIL: none is taken while a garbage collection or C code holding the GIL runs)."""

    def __init__(self, account: LoopAccount) -> None:
        super().__init__(name="stall sampler", daemon=True)
        self.account = account
        self.loop_thread = threading.get_ident()
        self.stop = threading.Event()

    def run(self) -> None:
        account = self.account
        while not self.stop.wait(STALL_SAMPLE_EVERY):
            if not account.running or account.phase is None:
                continue
            samples = account.samples
            frame = sys._current_frames().get(self.loop_thread)
            if frame is not None and account.running:
                samples.append(_where(frame))


def _where(frame: FrameType) -> str:
    """The innermost toolsync function of a stack (else the innermost Textual one) and the innermost function."""
    leaf = _function(frame)
    ours = theirs = None
    current: FrameType | None = frame
    while current is not None and ours is None:
        filename = current.f_code.co_filename
        if "/toolsync_tui/" in filename:
            ours = _function(current)
        elif theirs is None and "/textual/" in filename:
            theirs = _function(current)
        current = current.f_back
    return f"{ours or theirs or '-'} | {leaf}"


def _function(frame: FrameType) -> str:
    filename = frame.f_code.co_filename
    for marker in ("/site-packages/", f"{ROOT}/", f"/python{sys.version_info[0]}.{sys.version_info[1]}/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{frame.f_code.co_qualname} ({filename})"


def _task_label(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    qualname = str(getattr(coro, "__qualname__", task.get_name()))
    frame = getattr(coro, "cr_frame", None)
    owner = frame.f_locals.get("self") if frame is not None else None
    if qualname == "Worker._run":
        return f"worker of {type(getattr(owner, '_node', None)).__name__} ({getattr(owner, 'group', '')})"
    if qualname == "Timer._run_timer":
        callback = getattr(owner, "_callback", None)
        node = getattr(callback, "__self__", None)
        name = getattr(callback, "__name__", "?")
        return f"timer {type(node).__name__}.{name}" if node is not None else f"timer {name}"
    if qualname == "MessagePump._process_messages":
        return f"messages of {type(owner).__name__}"
    return qualname


def _install_hooks(watch: FrameWatch, paints: list[Paint]) -> None:
    """Wrap Screen._compositor_refresh and RunScreen._paint (in this process only) to time frames and paints."""
    from textual.screen import Screen

    from toolsync_tui.screens.run import RunScreen

    refresh = Screen._compositor_refresh
    paint = RunScreen._paint

    def timed_refresh(screen: Screen[Any]) -> None:
        refresh(screen)
        watch.refreshed(screen)

    shown: list[object] = [None]

    @functools.wraps(paint)
    def timed_paint(screen: RunScreen) -> None:
        clock = time.perf_counter()
        paint(screen)
        seconds = time.perf_counter() - clock
        progress = screen._progress
        done = sum(progress.counts.values()) if progress is not None else 0
        lines = progress.lines_done if progress is not None else 0
        paints.append(Paint(clock, seconds, lines, done, progress is not shown[0]))
        shown[0] = progress

    setattr(Screen, "_compositor_refresh", timed_refresh)  # noqa: B010 (mypy refuses assigning to a method)
    setattr(RunScreen, "_paint", timed_paint)  # noqa: B010


async def _lag_probe(phase: Phase, stop: asyncio.Event) -> None:
    while not stop.is_set():
        clock = time.perf_counter()
        await asyncio.sleep(LAG_INTERVAL)
        phase.lag.append(time.perf_counter() - clock - LAG_INTERVAL)


async def _key_to_frame(app: App[Any], watch: FrameWatch, key: str, shows: Callable[[Screen[Any]], bool]) -> float:
    """Send a key event as Pilot does (through the driver) and wait for the first frame that shows its effect."""
    from textual import events

    driver = app._driver
    assert driver is not None
    character = {"question_mark": "?"}.get(key, key)
    frame = watch.expect(shows)
    clock = time.perf_counter()
    driver.send_message(events.Key(key, character))
    return await asyncio.wait_for(frame, FRAME_TIMEOUT) - clock


async def _key_cycles(
    app: App[Any], pilot: Pilot[Any], watch: FrameWatch, phase: Phase, going: Callable[[], bool], every: float
) -> None:
    """Every `every` seconds while `going()`: `?` opens the help, `?` closes it; alternately timed to the frame and
    through pilot.press. `every` 0: no keys, only wait."""
    from toolsync_tui.screens.help import HelpScreen

    def help_shown(screen: Screen[Any]) -> bool:
        return isinstance(screen, HelpScreen)

    def help_gone(screen: Screen[Any]) -> bool:
        return not isinstance(screen, HelpScreen)

    cycle = 0
    tick = time.perf_counter()
    while going():
        if not every:
            await asyncio.sleep(0.05)
            continue
        try:
            if cycle % 2 == 0:
                phase.key_open.append(await _key_to_frame(app, watch, "question_mark", help_shown))
                phase.key_close.append(await _key_to_frame(app, watch, "question_mark", help_gone))
            else:
                for wanted in (True, False):
                    clock = time.perf_counter()
                    await pilot.press("question_mark")
                    phase.key_pilot.append(time.perf_counter() - clock)
                    if isinstance(app.screen, HelpScreen) != wanted:
                        phase.keys_lost += 1
        except TimeoutError:
            phase.keys_lost += 1
        while isinstance(app.screen, HelpScreen):  # never leave the help open (a lost key)
            await pilot.press("question_mark")
        cycle += 1
        tick += every
        await asyncio.sleep(max(0.0, tick - time.perf_counter()))


async def _wait_for(condition: Callable[[], bool], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {limit:.0f} s")
        await asyncio.sleep(0.05)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(config_path: Path, args: argparse.Namespace) -> ChildReport:
    """The interface from start to the end of the run, measured (the child's whole job): `args` are the child's
    options (--operation, --idle-seconds, --key-every)."""
    import textual
    from textual.widgets import DataTable

    from toolsync_tui.app import ToolsyncApp
    from toolsync_tui.config import load_config
    from toolsync_tui.engine.registry import OPERATIONS
    from toolsync_tui.screens.dashboard import DashboardScreen
    from toolsync_tui.screens.run import RunScreen

    watch, paints, account, collections = FrameWatch(), list[Paint](), LoopAccount(), GcWatch()
    _install_hooks(watch, paints)
    account.install()
    gc.callbacks.append(collections)
    sampler = StallSampler(account)
    sampler.start()
    app: ToolsyncApp = ToolsyncApp(load_config(config_path))
    idle, run = Phase(), Phase()
    async with app.run_test(size=SIZE) as pilot:
        # The dashboard settled: the site read, the command files' rows counted (a worker each).
        await _wait_for(lambda: isinstance(app.screen, DashboardScreen), 30, "the dashboard")
        await _wait_for(lambda: not any(w.is_running for w in app.workers), 300, "the dashboard's workers")
        await pilot.press(*["down"] * list(OPERATIONS).index(args.operation))
        table = app.screen.query_one(DataTable)
        chosen = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if chosen != args.operation:
            raise RuntimeError(f"the dashboard's cursor is on {chosen}, not {args.operation}")

        stop = asyncio.Event()
        account.phase = collections.phase = idle
        idle.cpu = _cpu_seconds()
        idle.started = time.perf_counter()
        lag = asyncio.create_task(_lag_probe(idle, stop))
        await _key_cycles(
            app, pilot, watch, idle, lambda: time.perf_counter() - idle.started < args.idle_seconds, args.key_every
        )
        stop.set()
        await lag
        idle.ended = time.perf_counter()
        idle.cpu = _cpu_seconds() - idle.cpu

        stop = asyncio.Event()
        maxrss_before, objects_before = _maxrss_mb(), len(gc.get_objects())
        account.phase = collections.phase = run
        run.cpu = _cpu_seconds()
        run.started = time.perf_counter()
        lag = asyncio.create_task(_lag_probe(run, stop))
        r_to_frame = await _key_to_frame(app, watch, "r", lambda screen: isinstance(screen, RunScreen))
        screen = app.screen
        if not isinstance(screen, RunScreen) or screen.worker is None:
            raise RuntimeError(f"`r` did not start a run: the screen is {type(screen).__name__}")
        await _key_cycles(app, pilot, watch, run, lambda: screen.running, args.key_every)
        await screen.worker.wait()
        run.ended = time.perf_counter()
        run.cpu = _cpu_seconds() - run.cpu
        account.phase = collections.phase = None
        sampler.stop.set()
        stop.set()
        await lag
        result = screen.result
        report = ChildReport(
            idle=idle,
            run=run,
            paints=paints,
            frames=watch.run_frames,
            r_to_frame=r_to_frame,
            rows=result.rows if result else 0,
            counts=dict(result.counts) if result else {},
            engine_seconds=result.duration if result else 0.0,
            error=screen.error,
            table_path=str(result.table_path) if result and result.table_path else None,
            tryback_path=str(result.tryback_path) if result and result.tryback_path else None,
            maxrss_before_run_mb=maxrss_before,
            maxrss_mb=_maxrss_mb(),
            objects_before_run=objects_before,
            objects_after_run=len(gc.get_objects()),
            textual=textual.__version__,
        )
    return report


def child_main(args: argparse.Namespace) -> int:
    report = asyncio.run(drive(args.drive, args))
    args.out.write_text(json.dumps(asdict(report)))
    return 0


# -- figures ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def spread_ms(values: Sequence[float]) -> str:
    """p50, p99 and max of durations in seconds, as milliseconds."""
    if not values:
        return "no samples"
    return (
        f"p50 {1000 * percentile(values, 0.5):,.1f} ms, p99 {1000 * percentile(values, 0.99):,.1f} ms, "
        f"max {1000 * max(values):,.1f} ms"
    )


def gaps(times: Sequence[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def phase_from(data: dict[str, Any]) -> Phase:
    stalls = [(float(at), float(seconds), str(owner)) for at, seconds, owner in data.pop("stalls")]
    collections = [(float(at), float(seconds), int(generation)) for at, seconds, generation in data.pop("collections")]
    return Phase(**data, stalls=stalls, collections=collections)


def stalled_lines(phase: Phase, top: int = 12) -> list[str]:
    """Where the loop thread was when sampled during stalls: owner, innermost toolsync (or Textual) function,
    innermost function."""
    total = sum(phase.stalled_in.values())
    if not total:
        return []
    ranked = sorted(phase.stalled_in.items(), key=lambda item: -item[1])[:top]
    return [
        f"  the loop thread during stalls ({total:,} samples, one every {1000 * STALL_SAMPLE_EVERY:.0f} ms or more; "
        "owner | innermost toolsync or Textual function | innermost function):",
        *(f"    {100 * n / total:5.1f}%  {where}" for where, n in ranked),
    ]


def gc_line(phase: Phase, objects_before: int, objects_after: int) -> str:
    """The garbage collections of a phase, and how much of the loop stalls' time they took."""
    by_generation = {g: [s for _, s, gen in phase.collections if gen == g] for g in (0, 1, 2)}
    stalls = sorted((at, at + seconds) for at, seconds, _ in phase.stalls)
    starts = [at for at, _ in stalls]
    in_stalls = 0.0
    full_in_stalls = 0
    for at, seconds, generation in phase.collections:
        k = bisect.bisect_right(starts, at) - 1
        if k >= 0 and at < stalls[k][1]:
            in_stalls += seconds
            full_in_stalls += generation == 2
    counts = ", ".join(f"generation {g} {len(v):,} ({sum(v):.1f} s)" for g, v in by_generation.items())
    stalled = sum(seconds for _, seconds, _ in phase.stalls)
    return (
        f"  garbage collections during the run: {counts}; the full ones {spread_ms(by_generation[2])}; "
        f"{full_in_stalls:,} full ones fell in loop stalls, and collections took {in_stalls:.1f} s of the stalls' "
        f"{stalled:.1f} s; objects tracked {objects_before:,} before `r`, {objects_after:,} after the run"
    )


def loop_lines(phase: Phase, top: int = 6) -> list[str]:
    """Who held the event loop over a phase: the owners with the most time, and the stalls by owner."""
    duration = phase.ended - phase.started
    busy = sum(seconds for _, seconds, _ in phase.loop.values())
    owners = sorted(phase.loop.items(), key=lambda item: -item[1][1])[:top]
    shares = "; ".join(
        f"{owner} {100 * total / duration:.1f}% ({int(count):,} callbacks, longest {1000 * longest:,.0f} ms)"
        for owner, (count, total, longest) in owners
    )
    stalled: Counter[str] = Counter()
    stalled_time: dict[str, float] = {}
    for _, seconds, owner in phase.stalls:
        stalled[owner] += 1
        stalled_time[owner] = stalled_time.get(owner, 0.0) + seconds
    by_owner = ", ".join(f"{owner} {n:,} ({stalled_time[owner]:.1f} s)" for owner, n in stalled.most_common(top))
    return [
        f"  the event loop was busy {100 * busy / duration:.0f}% of the run (its callbacks timed by owner, share of "
        f"the run): {shares}",
        f"  loop stalls of {1000 * STALL:.0f} ms or more: {len(phase.stalls):,} ({sum(stalled_time.values()):.1f} s): "
        + (by_owner or "none"),
    ]


def report_lines(child: dict[str, Any], unit: str) -> tuple[list[str], float]:
    """The figures of a measured run as printed, and the p99 key-to-frame round-trip in ms."""
    idle, run = phase_from(child["idle"]), phase_from(child["run"])
    paints = [Paint(**p) for p in child["paints"]]
    duration = run.ended - run.started
    during = [p for p in paints if p.at <= run.ended]
    new = [p.at for p in during if p.new and p.rows_done]
    timeline = []
    for k in range(1, 11):
        seen = [p.rows_done for p in during if p.at - run.started <= k * duration / 10]
        timeline.append(f"{max(seen, default=0):,}")
    frames = child["frames"]
    late = [x for x in run.lag if x > 0.1]
    p99 = 1000 * percentile(run.key_frame, 0.99)
    idle_keys = len(idle.key_frame) + len(idle.key_pilot)
    per_key = f"; the idle phase's CPU {1000 * idle.cpu / idle_keys:.0f} ms a key" if idle_keys else ""
    out = [
        f"  run: {child['rows']:,} {unit} in {duration:.1f} s from `r` to the end, as the screen saw it = "
        f"{child['rows'] / duration:,.0f} {unit}/s (the engine's own loop {child['engine_seconds']:.1f} s); "
        f"`r` to the run screen's first frame {1000 * child['r_to_frame']:.0f} ms",
        f"  {unit} shown at each tenth of the run: {' '.join(timeline)}",
        f"  event-loop lag (a {1000 * LAG_INTERVAL:.0f} ms sleep, {len(run.lag):,} wake-ups): {spread_ms(run.lag)}; "
        f"{len(late):,} wake-ups more than 100 ms late ({sum(late):.1f} s in all); "
        f"idle dashboard: {spread_ms(idle.lag)}",
        f"  key round-trip, key event to the first frame showing it (`?` opens the help, `?` closes it; "
        f"{len(run.key_frame):,} keys): {spread_ms(run.key_frame)}; opening {spread_ms(run.key_open)}; closing "
        f"{spread_ms(run.key_close)}; {sum(k >= RESPONSIVE_MS / 1000 for k in run.key_frame):,} keys took "
        f"{RESPONSIVE_MS:.0f} ms or more",
        f"    idle dashboard ({len(idle.key_frame)} keys): {spread_ms(idle.key_frame)}{per_key}",
        f"  key round-trip through pilot.press() ({len(run.key_pilot):,} keys; it also waits for the process to look "
        f"idle, 20 ms sleeps at least twice): {spread_ms(run.key_pilot)}; idle dashboard: {spread_ms(idle.key_pilot)}"
        + (f"; keys lost {run.keys_lost}" if run.keys_lost else ""),
        f"  paint: {len(during):,} painter calls ({len(during) / duration:.1f}/s; gaps "
        f"{spread_ms(gaps([p.at for p in during]))}); "
        f"{len(new):,} with new counters ({len(new) / duration:.2f}/s; gaps {spread_ms(gaps(new))}); the painter's "
        f"own time {spread_ms([p.seconds for p in during])}; {len(frames):,} frames of the run screen "
        f"({len(frames) / duration:.1f}/s)",
        *loop_lines(run),
        *stalled_lines(run),
        gc_line(run, child["objects_before_run"], child["objects_after_run"]),
        f"  peak RSS {child['maxrss_mb']:,.0f} MB (getrusage, the interface process; "
        f"{child['maxrss_before_run_mb']:,.0f} MB before `r`); its CPU during the run {run.cpu:.1f} s "
        f"({run.cpu / duration:.2f} cores)",
    ]
    return out, p99


# -- the harness: setup, the child, verification ---------------------------------------------------


def prepare(args: argparse.Namespace, server: ThrowawayMariaDB, workdir: Path) -> tuple[BenchCase, Prepared, Path]:
    """benchmarks.run's case for the operation: seeded, its file generated and moved into the config's inbox."""
    from benchmarks import run
    from toolsync_tui.config import load_config
    from toolsync_tui.engine.datadir.store import DataStore

    name, size_option, extra = CASES[args.operation]
    case = run.CASES[name]
    options = [name, size_option, str(args.lines), *extra(args.lines), "--seed", str(args.seed)]
    if args.batch_size:
        options += ["--batch-size", str(args.batch_size)]
    case_args = run.build_parser().parse_args(options)
    prepared = case.prepare(case_args, server, workdir)
    config_path = run.write_config(workdir, server, case, case_args)
    config = load_config(config_path)
    store = DataStore(config.data_dir)
    store.ensure()
    inbox_file = store.preselected(config.operation(case.operation).file)
    shutil.move(prepared.file.path, inbox_file)
    return case, prepared, config_path


def benchmark(args: argparse.Namespace) -> int:
    from benchmarks import run
    from benchmarks.floor import mariadbd_cpu_seconds
    from benchmarks.generate import count_values
    from tests.support.mariadb_server import ThrowawayMariaDB

    if args.profile:
        run.py_spy_binary()  # fail before the setup, not after it
    workdir = Path(tempfile.mkdtemp(prefix=f"toolsync-bench-tui-{args.operation}-"))
    server: ThrowawayMariaDB | None = None
    try:
        clock = time.monotonic()
        server = ThrowawayMariaDB.start()
        started = time.monotonic() - clock
        clock = time.monotonic()
        server.load_dump(run.DATABASE)
        loaded = time.monotonic() - clock
        case, prepared, config = prepare(args, server, workdir)
        generated = prepared.file
        seeded = "; ".join(
            f"seeded {s.rows:,} rows into {s.table} in {s.seconds:.1f} s ({s.method})" for s in prepared.seeded
        )
        print(
            f"setup ({case.name} of benchmarks.run): mariadbd {started:.1f} s, Moodle dump {loaded:.1f} s; "
            f"{seeded or 'nothing seeded'}; generated {generated.lines:,} lines "
            f"({generated.bytes / (1 << 20):,.1f} MB) in {generated.seconds:.1f} s",
            flush=True,
        )
        out = workdir / "interface.json"  # not tui.json: run_child writes its own figures there
        command = [
            sys.executable,
            "-m",
            "benchmarks.tui",
            "--drive",
            str(config),
            "--operation",
            case.operation,
            "--out",
            str(out),
            "--idle-seconds",
            str(args.idle_seconds),
            "--key-every",
            str(args.key_every),
        ]
        sampled = workdir / "tui.py-spy.txt" if args.profile else None
        load_before = os.getloadavg()[0]
        server_cpu = mariadbd_cpu_seconds(server)
        measured = run.run_child(command, workdir, "tui", py_spy_out=sampled)
        server_cpu = mariadbd_cpu_seconds(server) - server_cpu
        if measured.exit_code != 0 or not out.exists():
            print(f"the interface failed (exit code {measured.exit_code}):\n{measured.stderr[-3000:]}")
            return EXIT_MISMATCH
        child = json.loads(out.read_text())
        unit = case.unit
        print(
            f"{case.name} through the interface (Textual {child['textual']}, headless {SIZE[0]}x{SIZE[1]}, "
            f"{'py-spy attached, ' if args.profile else ''}"
            f"dashboard, `r`): {generated.lines:,} {unit} against "
            f"{prepared.against}",
            flush=True,
        )
        lines, p99 = report_lines(child, unit)
        print("\n".join(lines))
        if timeline := measured.rss_timeline():
            print(f"  RSS of the interface process, MB, at each tenth of its life (psutil): {timeline}")
        print(
            f"  mariadbd CPU {server_cpu:.1f} s over the child's {measured.wall:.1f} s; the machine: "
            f"{os.cpu_count()} cores, load average (1 min) {load_before:.2f} before the child, "
            f"{os.getloadavg()[0]:.2f} after it"
        )
        paths = {k: Path(child[f"{k}_path"]) for k in ("table", "tryback") if child[f"{k}_path"]}
        summary = run.Summary(child["rows"], child["engine_seconds"], Counter(child["counts"]), paths)
        problems = [child["error"]] if child["error"] else []
        problems += run.verify(measured, summary, generated.expected, check_exit=False)
        if prepared.check_database is not None:
            problems += prepared.check_database()
        if problems:
            print("  MISMATCH: " + "\n  MISMATCH: ".join(problems))
        else:
            print(
                f"  verified: {count_values(generated.expected.outcomes)}; {count_values(generated.expected.actions)}"
            )
        keys = len(child["run"]["key_open"]) + len(child["run"]["key_close"])
        met = keys > 0 and p99 < RESPONSIVE_MS
        verdict = f"{p99:,.1f} ms, {'met' if met else 'MISSED'}" if keys else "not measured (no keys were pressed)"
        print(
            f"responsive (p99 key round-trip, key to frame, under {RESPONSIVE_MS:.0f} ms while the run goes on): "
            + verdict
        )
        if sampled is not None:
            run._print_py_spy(sampled, args.profile_top)
        if problems:
            return EXIT_MISMATCH
        return EXIT_BELOW_TARGET if keys and not met and args.fail_below_target else EXIT_VERIFIED
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tui",
        description="Measure the interface's responsiveness (event-loop lag, key round-trip, paint rate) while it "
        "runs a large command file against a throwaway MariaDB with the Moodle dump.",
        epilog="Exit codes: 0 the run's counts matched the generated file, 1 they did not, 2 the p99 key round-trip "
        f"was {RESPONSIVE_MS:.0f} ms or more (only with --fail-below-target).",
    )
    parser.add_argument(
        "--operation",
        choices=list(CASES),
        default="enrols",
        help="enrols: new enrolments, each into a group the run creates (benchmarks.run enrols-add; the default); "
        "users: new users (users-create); check: course existence check (check, a course per 10 lines seeded)",
    )
    parser.add_argument("--lines", type=int, default=1_000_000, help="data lines of the command file (1,000,000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the generator (42)")
    parser.add_argument("--batch-size", type=int, default=0, help="run.batch_size (toolsync's default)")
    parser.add_argument(
        "--idle-seconds", type=float, default=5.0, help="probing the idle dashboard before the run, seconds (5)"
    )
    parser.add_argument(
        "--key-every",
        type=float,
        default=KEY_EVERY,
        help=f"seconds between key cycles ({KEY_EVERY}); 0: no keys (to see what the probing itself costs)",
    )
    parser.add_argument(
        "--profile",
        action="store_const",
        const="py-spy",
        help="sample the interface process with py-spy (all threads) and print where the time went",
    )
    parser.add_argument("--profile-top", type=int, default=30, help="functions shown per profile listing")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (file, config, reports)")
    parser.add_argument("--fail-below-target", action="store_true", help="exit 2 when not responsive")
    # The measured child (started by the harness): drive the interface with this configuration.
    parser.add_argument("--drive", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.drive is not None:
        return child_main(args)
    return benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
