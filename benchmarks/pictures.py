"""User picture benchmark data: an archive of pictures of seeded users, the moodledata they go to, the rows and files
a run must leave, and the memory of a process tree (the command and its icon workers).

Picture i is the picture of user i (`generate.user_row(i)`, seeded with `seed_users`), named by username:
`<username>.jpg` or `<username>.png`, some in sub-folders. About half are JPEG (quality 75-95, one in five with an
EXIF orientation a phone writes, 6: turn 90 degrees), half PNG (one in four with an alpha channel). Sides are drawn
uniformly from 200..2000 pixels, a third of the pictures square. The content is gradients under smooth colour blobs
and some noise: ~1.7 bytes a pixel as PNG (zlib level 1), ~0.3 as JPEG, like photographs rather than flat drawings.
Everything is a function of the seed (the noise comes from `random.Random`, not Pillow's own generator). Every
entry must report `created`, action `picture`.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import random
import shutil
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageChops

from benchmarks.generate import Expected, GeneratedFile, user_row

ARCHIVE_NAME = "userpictures_bench.zip"
ACTION = "picture"
MIN_SIDE, MAX_SIDE = 200, 2000
# Where picture i goes in the archive (i % 5): two in five at the top, the others in (nested) folders.
FOLDERS = ("", "photos/", "", "photos/2026/", "import/L1 groupe A/")
USER_CONTEXT_LEVEL = 30
TILE = 2304  # the noise and blob textures pictures are cut from: larger than MAX_SIDE, for varied offsets
BLOB_CELLS = 48  # the blob texture is this many random cells a side, smoothed up to TILE
EXIF_ORIENTATION = 0x0112
ZIP_DATE = (2026, 9, 1, 8, 0, 0)
GENERATOR_VERSION = 1  # part of the cache key: change it when the pictures change

Kind = Literal["jpeg", "png", "png-alpha"]


@dataclass(frozen=True)
class PictureSpec:
    """Everything picture i is made of: drawn in the harness, rendered (the same bytes for the same spec) anywhere."""

    index: int
    name: str  # its path in the archive
    kind: Kind
    width: int
    height: int
    quality: int  # JPEG quality (unused for PNG)
    orientation: int  # EXIF orientation of a JPEG; 1: none written
    angle: float  # of the linear gradient
    blob_at: tuple[int, int]
    noise_at: tuple[int, int]
    noise: float  # the share of the noise texture blended in

    @property
    def extension(self) -> str:
        return "jpg" if self.kind == "jpeg" else "png"


def picture_spec(index: int, seed: int) -> PictureSpec:
    rng = random.Random(f"pictures-{seed}-{index}")
    width = rng.randint(MIN_SIDE, MAX_SIDE)
    height = width if rng.random() < 1 / 3 else rng.randint(MIN_SIDE, MAX_SIDE)
    kind: Kind = "jpeg" if rng.random() < 0.5 else ("png-alpha" if rng.random() < 0.25 else "png")
    orientation = 6 if kind == "jpeg" and rng.random() < 0.2 else 1
    extension = "jpg" if kind == "jpeg" else "png"
    return PictureSpec(
        index=index,
        name=f"{FOLDERS[index % len(FOLDERS)]}{user_row(index)['username']}.{extension}",
        kind=kind,
        width=width,
        height=height,
        quality=rng.randint(75, 95),
        orientation=orientation,
        angle=rng.uniform(0, 360),
        blob_at=(rng.randint(0, TILE - width), rng.randint(0, TILE - height)),
        noise_at=(rng.randint(0, TILE - width), rng.randint(0, TILE - height)),
        # JPEG quantisation smooths most of it away: more noise gives a photograph's ~0.3 byte a pixel.
        noise=rng.uniform(0.12, 0.2) if kind == "jpeg" else rng.uniform(0.01, 0.04),
    )


_textures: tuple[Image.Image, Image.Image] | None = None


def _make_textures(seed: int) -> None:
    """Per generating process: the noise and blob textures (~0.2 s), the same in every process for a seed."""
    global _textures
    rng = random.Random(f"textures-{seed}")
    noise = Image.frombytes("RGB", (TILE, TILE), rng.randbytes(TILE * TILE * 3))
    cells = Image.frombytes("RGB", (BLOB_CELLS, BLOB_CELLS), rng.randbytes(BLOB_CELLS * BLOB_CELLS * 3))
    _textures = (noise, cells.resize((TILE, TILE), Image.Resampling.BICUBIC))


def render(spec: PictureSpec) -> bytes:
    """The picture's file: gradients, blobs over them, a little noise; encoded as its kind says."""
    assert _textures is not None, "_make_textures() first"
    noise, blobs = _textures
    size = (spec.width, spec.height)
    linear = Image.linear_gradient("L").rotate(spec.angle, resample=Image.Resampling.BILINEAR)
    linear = linear.resize(size, Image.Resampling.BILINEAR)
    radial = Image.radial_gradient("L").resize(size, Image.Resampling.BILINEAR)
    image = Image.merge("RGB", (linear, radial, ImageChops.invert(linear)))
    bx, by = spec.blob_at
    image = Image.blend(image, blobs.crop((bx, by, bx + spec.width, by + spec.height)), 0.5)
    nx, ny = spec.noise_at
    image = Image.blend(image, noise.crop((nx, ny, nx + spec.width, ny + spec.height)), spec.noise)
    out = io.BytesIO()
    if spec.kind == "jpeg":
        exif = Image.Exif()
        if spec.orientation != 1:
            exif[EXIF_ORIENTATION] = spec.orientation
        image.save(out, "JPEG", quality=spec.quality, exif=exif.tobytes())
    else:
        if spec.kind == "png-alpha":
            image.putalpha(ImageChops.invert(radial))
        # zlib's fastest level: 4x quicker to make than the usual 6, ~15 % larger; the run only decodes them.
        image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def write_pictures_archive(path: Path, count: int, seed: int) -> GeneratedFile:
    """The archive of pictures 0..count-1, made on every core; reused when the same one is already at `path` (a
    --repeat run in the same work folder)."""
    clock = time.monotonic()
    specs = [picture_spec(i, seed) for i in range(count)]
    key = f"{GENERATOR_VERSION} {count} {seed}"
    stamp = path.with_name(path.name + ".key")
    if not (path.is_file() and stamp.is_file() and stamp.read_text() == key):
        stamp.unlink(missing_ok=True)
        _write_archive(path, specs, seed)
        stamp.write_text(key)
    expected = Expected(count, Counter({"created": count}), Counter({ACTION: count}))
    return GeneratedFile(path, count, path.stat().st_size, time.monotonic() - clock, expected)


def _write_archive(path: Path, specs: list[PictureSpec], seed: int) -> None:
    # Deflated as zip tools do by default (pictures hardly shrink, so reading is mostly copying).
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        folders = sorted({part for spec in specs for part in _parents(spec.name)})
        for folder in folders:
            info = zipfile.ZipInfo(folder, ZIP_DATE)
            info.external_attr = (0o40755 << 16) | 0x10  # a Unix folder, and MS-DOS's directory flag
            archive.writestr(info, b"")
        for spec, data in zip(specs, _rendered(specs, seed), strict=True):
            info = zipfile.ZipInfo(spec.name, ZIP_DATE)
            info.external_attr = 0o100644 << 16  # a regular Unix file, as zip on Linux records it
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: k + 1]) + "/" for k in range(len(parts))]


def _rendered(specs: list[PictureSpec], seed: int) -> Iterator[bytes]:
    workers = os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_make_textures, initargs=(seed,)) as pool:
        yield from pool.map(render, specs, chunksize=4)


def expected_extensions(count: int, seed: int) -> Counter[str]:
    """How many pictures are JPEG and PNG: their icons are f1.jpg or f1.png."""
    return Counter(picture_spec(i, seed).extension for i in range(count))


def fresh_moodledata(path: Path) -> Path:
    """An empty moodledata with its filedir/, as `moodle_data_dir` wants it."""
    shutil.rmtree(path, ignore_errors=True)
    (path / "filedir").mkdir(parents=True)
    return path


# -- what the run must leave ---------------------------------------------------------------------


def _icon_rows(prefix: str, first: int, last: int) -> str:
    """FROM ... WHERE of the icon area's rows of users first..last."""
    return (
        f"FROM {prefix}files f JOIN {prefix}context c ON c.id = f.contextid AND c.contextlevel = {USER_CONTEXT_LEVEL} "
        f"WHERE c.instanceid BETWEEN {first} AND {last} AND f.component = 'user' AND f.filearea = 'icon'"
    )


def picture_counts_sql(prefix: str, first: int, last: int) -> str:
    """One row: the icon area's rows of users first..last, of everyone, the users left without a picture, those whose
    picture is the id of their f1, and the f1.jpg and f1.png rows."""
    rows = _icon_rows(prefix, first, last)
    f1 = (
        f"SELECT COUNT(*) FROM {prefix}user u JOIN {prefix}context c ON c.contextlevel = {USER_CONTEXT_LEVEL} "
        f"AND c.instanceid = u.id JOIN {prefix}files f ON f.contextid = c.id AND f.component = 'user' "
        "AND f.filearea = 'icon' AND f.itemid = 0 AND f.filepath = '/' AND f.filename LIKE 'f1.%' "
        f"WHERE u.id BETWEEN {first} AND {last} AND u.picture = f.id"
    )
    return (
        f"SELECT (SELECT COUNT(*) {rows}), "
        f"(SELECT COUNT(*) FROM {prefix}files WHERE component = 'user' AND filearea = 'icon'), "
        f"(SELECT COUNT(*) FROM {prefix}user WHERE id BETWEEN {first} AND {last} AND picture = 0), "
        f"({f1}), "
        f"(SELECT COUNT(*) {rows} AND f.filename = 'f1.jpg'), "
        f"(SELECT COUNT(*) {rows} AND f.filename = 'f1.png')"
    )


def icon_files_sql(prefix: str, first: int, last: int) -> str:
    """The content hash and size of every icon file (not the area's `.` entry) of users first..last."""
    return f"SELECT DISTINCT f.contenthash, f.filesize {_icon_rows(prefix, first, last)} AND f.filename <> '.'"


def pool_problems(moodledata: Path, listing: str) -> list[str]:
    """Rows of `icon_files_sql` whose content is not in moodledata/filedir/xx/yy/<hash> with that size and SHA-1."""
    missing: list[str] = []
    wrong: list[str] = []
    checked = 0
    for line in listing.splitlines():
        contenthash, size = line.split("\t")
        checked += 1
        stored = moodledata / "filedir" / contenthash[:2] / contenthash[2:4] / contenthash
        try:
            data = stored.read_bytes()
        except FileNotFoundError:
            missing.append(contenthash)
            continue
        if len(data) != int(size) or hashlib.sha1(data).hexdigest() != contenthash:
            wrong.append(contenthash)
    problems = []
    if not checked:
        problems.append("no icon file rows to check against the file pool")
    if missing:
        problems.append(f"{len(missing):,} of {checked:,} icon contents missing from filedir/ (e.g. {missing[0]})")
    if wrong:
        problems.append(f"{len(wrong):,} of {checked:,} icon contents in filedir/ have another size or SHA-1")
    if leftovers := [p.name for p in (moodledata / "filedir").rglob("*.tmp.*")]:
        problems.append(f"{len(leftovers):,} temporary files left in filedir/ (e.g. {leftovers[0]})")
    return problems


# -- the memory of a process tree ----------------------------------------------------------------

KB = 1024


@dataclass
class ProcessMemory:
    pid: int
    role: str  # "main", "worker" (a multiprocessing spawn child), "resource tracker", "other"
    peak_kb: int = 0  # VmHWM: the peak resident set of the process's own address space (since its exec)
    cpu_seconds: float = 0.0  # user + system, last seen


@dataclass
class TreeMemory:
    """The command and its descendants as seen in /proc every TreeMemory.interval while they run.

    A process's VmHWM (/proc/PID/status) is the kernel's high-water mark of its resident set since its exec, so the
    last figure read before the process exits is its peak (to within the last interval). A multiprocessing "spawn"
    child is vforked: until its exec it shares the parent's address space and shows the parent's command line and
    figures, so it is only read once its command line is its own. The sums are over the processes alive at one
    sample: resident sets (shared library pages counted once per process) and anonymous memory (private to each
    process here: spawned processes share no anonymous pages with the main one)."""

    interval: float = 0.1
    processes: dict[int, ProcessMemory] = field(default_factory=dict)
    rss_sum_peak_kb: int = 0
    anon_sum_peak_kb: int = 0
    samples: int = 0
    _main_cmdline: bytes = b""

    def sample(self, psutil: Any, root: Any) -> None:
        """Read the tree of `root`, a psutil.Process (psutil.Error raised once it is gone ends the sampler)."""
        members = [root, *root.children(recursive=True)]
        rss_sum = anon_sum = 0
        for member in members:
            pid = member.pid
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                status = _status_kb(Path(f"/proc/{pid}/status").read_text())
                times = member.cpu_times()
            except (OSError, psutil.Error):  # gone between the listing and the reading
                continue
            if pid == root.pid:
                self._main_cmdline = cmdline
            elif not cmdline or cmdline == self._main_cmdline:
                continue  # not exec'd yet (vfork: the main process's memory), or a zombie
            if "VmHWM" not in status:
                continue  # exited, not reaped yet: its address space is gone
            known = self.processes.get(pid)
            if known is None:
                known = self.processes[pid] = ProcessMemory(pid, _role(pid == root.pid, cmdline))
            known.peak_kb = max(known.peak_kb, status["VmHWM"])
            known.cpu_seconds = max(known.cpu_seconds, times.user + times.system)
            rss_sum += status.get("VmRSS", 0)
            anon_sum += status.get("RssAnon", 0)
        self.rss_sum_peak_kb = max(self.rss_sum_peak_kb, rss_sum)
        self.anon_sum_peak_kb = max(self.anon_sum_peak_kb, anon_sum)
        self.samples += 1

    def of_role(self, role: str) -> list[ProcessMemory]:
        return sorted((p for p in self.processes.values() if p.role == role), key=lambda p: p.pid)


def _status_kb(text: str) -> dict[str, int]:
    figures: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if value.endswith(" kB"):
            figures[name] = int(value[:-3])
    return figures


def _role(is_main: bool, cmdline: bytes) -> str:
    if is_main:
        return "main"
    if b"spawn_main" in cmdline:
        return "worker"
    if b"resource_tracker" in cmdline:
        return "resource tracker"
    return "other"


def memory_lines(tree: TreeMemory, wait4_mb: float, wall: float) -> tuple[list[str], float, float]:
    """What the tree's figures say, in words; and the main process's and the largest worker's peaks (MiB)."""
    main = tree.of_role("main")
    workers = tree.of_role("worker")
    main_mb = main[0].peak_kb / KB if main else 0.0
    worker_mb = max((w.peak_kb / KB for w in workers), default=0.0)
    others = [p for p in tree.processes.values() if p.role not in ("main", "worker")]
    cores = os.cpu_count() or 1
    worker_cpu = sum(w.cpu_seconds for w in workers)
    lines = [
        f"cores: os.cpu_count() = {cores}; icon workers seen: {len(workers)}"
        + (f" (pids {', '.join(str(w.pid) for w in workers)})" if workers else ""),
        f"peak RSS, own (VmHWM of each process's own address space, /proc every {tree.interval} s, "
        f"{tree.samples:,} samples): main process {main_mb:,.0f} MB; largest worker {worker_mb:,.0f} MB "
        f"(each: {' '.join(f'{w.peak_kb / KB:,.0f}' for w in workers) or '-'})"
        + "".join(f"; {p.role} {p.peak_kb / KB:,.0f} MB" for p in others),
        f"peak RSS {wait4_mb:,.0f} MB on the line above is wait4's ru_maxrss: on Linux the largest of the main "
        "process's and those of the descendants it reaped (the workers, at pool shutdown), a worker's counting the "
        "main process's high-water mark at its spawn (vfork, then exec): one process, never a sum",
        f"the tree at once (sampled): resident sets summed {tree.rss_sum_peak_kb / KB:,.0f} MB at most (library "
        f"pages counted once per process), anonymous memory summed {tree.anon_sum_peak_kb / KB:,.0f} MB at most",
        f"CPU: main process {sum(p.cpu_seconds for p in main):.1f} s, workers {worker_cpu:.1f} s in all "
        f"= {worker_cpu / max(wall, 1e-9):.2f} of the {cores} cores over the run's {wall:.1f} s",
    ]
    return lines, main_mb, worker_mb
