"""User pictures written by the pictures operation, shown and served by Moodle itself: a real Moodle 4.5 site
(the suite's own, or TOOLSYNC_TEST_MOODLE_DIRROOT: see tests/support/moodle_site.py).

Moodle's file storage API reads the icons back, the profile picture Moodle renders points at them, and an HTTP GET of
that very URL is answered by the site's own pluginfile.php (run by PHP's built-in web server) with the bytes toolsync
stored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import http.client
import io
import random
import shlex
import socket
import subprocess
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image, ImageDraw

from tests.conftest import run_blocking
from tests.support.moodle_site import Site, moodle_site_fixture, site_config, site_db_fixture
from tests.support.operation_files import inbox_file, report_of
from tests.support.tables import rows_of
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunResult, run_operation

__all__ = ["moodle_site_fixture", "site_db_fixture"]

# Each icon's side in pixels, which is also a user_picture size whose URL names that icon.
ICON_SIDES = {"f1": 100, "f2": 35, "f3": 512}
EMPTY_SHA1 = hashlib.sha1(b"").hexdigest()

CREATE_USER = """
require_once($CFG->dirroot . '/user/lib.php');
$id = user_create_user((object) ['username' => %(username)s, 'firstname' => 'Picture', 'lastname' => %(username)s,
    'email' => %(username)s . '@example.com', 'auth' => 'manual', 'confirmed' => 1,
    'mnethostid' => $CFG->mnet_localhost_id], false, false);
$result = ['id' => $id, 'context' => (int) context_user::instance($id)->id, 'dataroot' => $CFG->dataroot];
"""

DELETE_USERS = """
foreach (%(ids)s as $id) {
    if ($user = $DB->get_record('user', ['id' => $id, 'deleted' => 0])) {
        delete_user($user);
    }
}
$result = true;
"""

# What Moodle sees of the user's picture: the icon area through the file storage API (with its own checks of each
# file), the files it finds by name, the URLs of the picture at each size and the picture HTML of the profile.
SEE_PICTURE = """
$user = core_user::get_user(%(id)d, '*', MUST_EXIST);
$context = context_user::instance($user->id);
$fs = get_file_storage();
$filesystem = $fs->get_file_system();
$PAGE->set_context(context_system::instance());
$files = [];
foreach ($fs->get_area_files($context->id, 'user', 'icon', 0, 'id', true) as $file) {
    $found = $fs->get_file_by_hash($file->get_pathnamehash());
    $seen = ['id' => (int) $file->get_id(), 'filename' => $file->get_filename(),
        'contenthash' => $file->get_contenthash(), 'pathnamehash' => $file->get_pathnamehash(),
        'moodle_pathnamehash' => $fs->get_pathname_hash($context->id, 'user', 'icon', 0, '/', $file->get_filename()),
        'found_by_hash' => $found ? (int) $found->get_id() : null, 'directory' => $file->is_directory(),
        'filesize' => (int) $file->get_filesize(), 'mimetype' => $file->get_mimetype()];
    if (!$file->is_directory()) {
        $content = $file->get_content();
        $seen += ['content_sha1' => sha1($content), 'content_length' => strlen($content),
            'imageinfo' => $file->get_imageinfo(),
            'mimetype_from_content' => $filesystem->mimetype_from_storedfile($file),
            'readable' => $filesystem->is_file_readable_locally_by_storedfile($file),
            'parent' => ($parent = $file->get_parent_directory()) ? (int) $parent->get_id() : null];
    }
    $files[] = $seen;
}
$named = [];
foreach (['f1', 'f2', 'f3'] as $icon) {
    foreach (['jpg', 'png'] as $extension) {
        $file = $fs->get_file($context->id, 'user', 'icon', 0, '/', "$icon.$extension");
        $named["$icon.$extension"] = $file ? (int) $file->get_id() : null;
    }
}
$urls = [];
foreach (%(sizes)s as $icon => $size) {
    $picture = new user_picture($user);
    $picture->size = $size;
    $urls[$icon] = $picture->get_url($PAGE)->out(false);
}
$result = ['picture' => (int) $user->picture, 'context' => (int) $context->id, 'files' => $files, 'named' => $named,
    'urls' => $urls, 'theme' => $PAGE->theme->name, 'wwwroot' => $CFG->wwwroot,
    'html' => $OUTPUT->user_picture($user, ['size' => 100, 'link' => false])];
"""

# Where Moodle's file system has content: referenced by rows, in the pool (filedir), in the trash.
SEE_CONTENT = """
$filesystem = get_file_storage()->get_file_system();
$trashpath = new ReflectionMethod($filesystem, 'get_trash_fullpath_from_hash');
$result = [];
foreach (%(hashes)s as $hash) {
    $result[$hash] = ['rows' => $DB->count_records('files', ['contenthash' => $hash]),
        'in_pool' => $filesystem->is_file_readable_locally_by_hash($hash),
        'in_trash' => is_file($trashpath->invoke($filesystem, $hash)),
        'trash_sha1' => is_file($trashpath->invoke($filesystem, $hash)) ? sha1_file($trashpath->invoke($filesystem,
            $hash)) : null];
}
"""

# The same image made a picture by Moodle itself (lib/gdlib.php process_new_icon(), as user/editlib.php does).
MOODLE_ICON = """
require_once($CFG->libdir . '/gdlib.php');
$context = context_user::instance(%(id)d);
$source = make_request_directory() . '/upload';
file_put_contents($source, base64_decode(%(image)s));
$picture = process_new_icon($context, 'user', 'icon', 0, $source);
$DB->set_field('user', 'picture', $picture, ['id' => %(id)d]);
$result = $picture;
"""


@dataclass(frozen=True)
class SiteUser:
    id: int
    username: str
    context: int
    dataroot: Path


@pytest.fixture(name="make_user")
async def make_user_fixture(moodle_site: Site) -> AsyncIterator[Callable[[], Awaitable[SiteUser]]]:
    """Users created in the site for one test (a unique username each), deleted by Moodle afterwards."""
    made: list[SiteUser] = []

    async def make() -> SiteUser:
        username = f"tspic{uuid.uuid4().hex[:12]}"
        seen = await moodle_site.run_php(CREATE_USER % {"username": _php(username)})
        made.append(SiteUser(int(seen["id"]), username, int(seen["context"]), Path(seen["dataroot"])))
        return made[-1]

    try:
        yield make
    finally:
        if made:
            await moodle_site.run_php(DELETE_USERS % {"ids": _php([user.id for user in made])})


@dataclass(frozen=True)
class Served:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class MoodleWeb:
    """The site's code behind PHP's built-in web server, fetched from like a browser (one session, its cookie kept)."""

    host: str
    port: int
    cookies: dict[str, str] = field(default_factory=dict)

    async def fetch(self, wwwroot: str, url: str) -> Served:
        """GET a URL of the site, as a browser showing the profile would."""
        assert url.startswith(wwwroot + "/"), url

        def get() -> Served:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
            # The request names the site's wwwroot host, so that Moodle takes it for one of its own.
            headers = {"Host": urlsplit(wwwroot).netloc}
            if self.cookies:
                headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
            try:
                connection.request("GET", url[len(wwwroot) :], headers=headers)
                response = connection.getresponse()
                body = response.read()
            finally:
                connection.close()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    cookie, _, rest = value.partition(";")
                    key, _, content = cookie.strip().partition("=")
                    if "expires=thu, 01 jan 1970" in rest.lower() or content == "deleted":
                        self.cookies.pop(key, None)
                    else:
                        self.cookies[key] = content
            return Served(response.status, {k.lower(): v for k, v in response.getheaders()}, body)

        return await asyncio.to_thread(get)


@pytest.fixture(scope="module", name="moodle_web")
def moodle_web_fixture(moodle_site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MoodleWeb]:
    """The site served over HTTP by PHP's built-in web server for the module's tests; the session its requests opened
    is ended afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sudo = ["sudo", "-n", "-u", moodle_site.run_as, "--"] if moodle_site.run_as else []
    log_path = tmp_path_factory.mktemp("moodle_web") / "php-server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*sudo, *shlex.split(moodle_site.php), "-S", f"127.0.0.1:{port}", "-t", str(moodle_site.dirroot)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    web = MoodleWeb("127.0.0.1", port)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((web.host, port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"PHP's built-in web server did not start: {log_path.read_text(errors='replace')}")
                time.sleep(0.1)
        yield web
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        sessions = [value for name, value in web.cookies.items() if name.startswith("MoodleSession")]
        if sessions:
            end = f"foreach ({_php(sessions)} as $sid) {{ \\core\\session\\manager::kill_session($sid); }}"
            run_blocking(moodle_site.run_php(end + " $result = true;"))


def _php(value: Any) -> str:
    """A PHP literal for a string, an integer, or a list or dict of them."""
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "[" + ", ".join(f"{_php(k)} => {_php(v)}" for k, v in value.items()) + "]"
    return "[" + ", ".join(_php(item) for item in value) + "]"


def photo(seed: str, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A picture with content of its own: a gradient under ellipses placed from the seed (unique content per run, so
    that no other file of the site shares the icons' content)."""
    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize(size).convert(mode)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").rotate(90).resize(size))
    draw = ImageDraw.Draw(image)
    width, height = size
    for _ in range(60):
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randrange(5, 80)
        colour = tuple(rng.randrange(256) for _ in mode)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return image


def encoded(image: Image.Image, image_format: str) -> bytes:
    out = io.BytesIO()
    image.save(out, image_format)
    return out.getvalue()


async def run_pictures(config: Config, gateway: MoodleGateway, entries: dict[str, bytes]) -> RunResult:
    """The pictures operation on an archive of these entries."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    path = inbox_file(config, f"userpictures_{uuid.uuid4().hex[:8]}.zip", out.getvalue())
    return await run_operation(config, gateway, "pictures", path)


def pictures_config(moodle_site: Site, tmp_path: Path, dataroot: Path) -> Config:
    config = site_config(moodle_site, tmp_path, bridge=False)
    config.set("operations.pictures.moodle_data_dir", str(dataroot))
    return config


async def stored_icons(gateway: MoodleGateway, user: SiteUser) -> dict[str, dict[str, Any]]:
    """The rows of the user's icon area by filename, each with the bytes of its content in the pool."""
    rows = await rows_of(
        gateway, gateway.schema.files, contextid=user.context, component="user", filearea="icon", itemid=0
    )
    stored = {}
    for row in rows:
        h = row["contenthash"]
        path = user.dataroot / "filedir" / h[:2] / h[2:4] / h
        stored[row["filename"]] = row | {"bytes": b"" if row["filename"] == "." else path.read_bytes()}
    return stored


async def see_picture(moodle_site: Site, user: SiteUser) -> dict[str, Any]:
    seen: dict[str, Any] = await moodle_site.run_php(SEE_PICTURE % {"id": user.id, "sizes": _php(ICON_SIDES)})
    return seen


def check_area(seen: dict[str, Any], stored: dict[str, dict[str, Any]], extension: str, mimetype: str) -> None:
    """Moodle's view of the icon area agrees, file by file, with what toolsync wrote and with Moodle's own rules."""
    names = [f"f1.{extension}", ".", f"f2.{extension}", f"f3.{extension}"]
    # Exactly the files of process_new_icon(), in its order (f1 first, which creates the directory entry).
    assert [file["filename"] for file in seen["files"]] == names
    assert set(stored) == set(names)
    directory = next(file for file in seen["files"] if file["directory"])
    assert directory["filename"] == "."
    assert directory["contenthash"] == EMPTY_SHA1
    assert directory["filesize"] == 0
    for file in seen["files"]:
        row = stored[file["filename"]]
        assert file["id"] == row["id"]
        assert file["pathnamehash"] == file["moodle_pathnamehash"] == row["pathnamehash"]
        assert file["found_by_hash"] == file["id"]
        if file["directory"]:
            continue
        icon = file["filename"].split(".")[0]
        side = ICON_SIDES[icon]
        assert hashlib.sha1(row["bytes"]).hexdigest() == row["contenthash"] == file["contenthash"]
        assert file["content_sha1"] == row["contenthash"]  # what Moodle reads is what toolsync wrote
        assert file["content_length"] == file["filesize"] == len(row["bytes"])
        assert file["readable"] is True
        assert file["mimetype"] == file["mimetype_from_content"] == mimetype
        assert file["imageinfo"]["width"] == file["imageinfo"]["height"] == side
        assert file["imageinfo"]["mimetype"] == mimetype
        assert file["parent"] == directory["id"]
        assert seen["named"][f"{icon}.{extension}"] == file["id"]
    other = "png" if extension == "jpg" else "jpg"
    assert [seen["named"][f"{icon}.{other}"] for icon in ICON_SIDES] == [None, None, None]


async def check_served(
    moodle_web: MoodleWeb, seen: dict[str, Any], stored: dict[str, dict[str, Any]], extension: str, mimetype: str
) -> None:
    """The profile shows the picture and each of its URLs serves, through Moodle, the icon toolsync stored."""
    context, picture = seen["context"], seen["picture"]
    assert picture == stored[f"f1.{extension}"]["id"]
    for icon, url in seen["urls"].items():
        parts = urlsplit(url)
        assert parts.path.endswith(f"/pluginfile.php/{context}/user/icon/{seen['theme']}/{icon}"), url
        assert parse_qs(parts.query) == {"rev": [str(picture)]}, url
    # The profile's picture (100 px) is f1 at that URL, not the default "no picture" image.
    assert f'src="{html.escape(seen["urls"]["f1"])}"' in seen["html"], seen["html"]
    assert "defaultuserpic" not in seen["html"]
    for icon, url in seen["urls"].items():
        served = await moodle_web.fetch(seen["wwwroot"], url)
        row = stored[f"{icon}.{extension}"]
        assert served.status == 200, (url, served.status, served.body[:500])
        assert hashlib.sha1(served.body).hexdigest() == row["contenthash"], url
        assert served.body == row["bytes"]
        assert served.headers["content-type"] == mimetype
        assert served.headers["etag"] == f'"{row["contenthash"]}"'
        assert int(served.headers["content-length"]) == len(row["bytes"])


async def test_a_jpeg_picture_shows_on_the_profile_and_serves_through_moodle(
    moodle_site: Site,
    site_db: MoodleGateway,
    moodle_web: MoodleWeb,
    make_user: Callable[[], Awaitable[SiteUser]],
    tmp_path: Path,
) -> None:
    user = await make_user()
    config = pictures_config(moodle_site, tmp_path, user.dataroot)
    result = await run_pictures(
        config, site_db, {f"{user.username}.jpg": encoded(photo(user.username, (640, 480)), "JPEG")}
    )
    assert result.counts == {"created": 1}, report_of(result)
    stored = await stored_icons(site_db, user)
    seen = await see_picture(moodle_site, user)
    check_area(seen, stored, "jpg", "image/jpeg")
    await check_served(moodle_web, seen, stored, "jpg", "image/jpeg")
    # Serving found every file: Moodle resets user.picture to 0 when the picture it names is missing.
    assert (await see_picture(moodle_site, user))["picture"] == stored["f1.jpg"]["id"]


async def test_a_png_replaces_the_jpeg_and_the_old_content_goes_to_the_trash(
    moodle_site: Site,
    site_db: MoodleGateway,
    moodle_web: MoodleWeb,
    make_user: Callable[[], Awaitable[SiteUser]],
    tmp_path: Path,
) -> None:
    user = await make_user()
    config = pictures_config(moodle_site, tmp_path, user.dataroot)
    jpeg = encoded(photo(user.username, (640, 480)), "JPEG")
    assert (await run_pictures(config, site_db, {f"{user.username}.jpg": jpeg})).counts == {"created": 1}
    before = await stored_icons(site_db, user)

    png = encoded(photo(user.username + "png", (480, 640), "RGBA"), "PNG")
    result = await run_pictures(config, site_db, {f"{user.username}.png": png})
    assert result.counts == {"updated": 1}, report_of(result)
    stored = await stored_icons(site_db, user)
    seen = await see_picture(moodle_site, user)
    check_area(seen, stored, "png", "image/png")  # f1.jpg (and f2, f3) gone from Moodle's view
    assert seen["picture"] != before["f1.jpg"]["id"]  # a new revision in the picture's URLs
    await check_served(moodle_web, seen, stored, "png", "image/png")

    old = {row["contenthash"] for name, row in before.items() if name != "."}
    where = await moodle_site.run_php(SEE_CONTENT % {"hashes": _php(sorted(old))})
    for contenthash in old:  # content of this run only: no other row of the site shares it
        assert where[contenthash] == {"rows": 0, "in_pool": False, "in_trash": True, "trash_sha1": contenthash}

    # And back to a JPEG: pluginfile.php prefers f1.png, so a PNG left behind would still be served.
    again = encoded(photo(user.username + "again", (500, 500)), "JPEG")
    assert (await run_pictures(config, site_db, {f"{user.username}.jpeg": again})).counts == {"updated": 1}
    stored = await stored_icons(site_db, user)
    seen = await see_picture(moodle_site, user)
    check_area(seen, stored, "jpg", "image/jpeg")
    await check_served(moodle_web, seen, stored, "jpg", "image/jpeg")


async def test_the_icon_area_is_the_one_moodle_makes_for_the_same_picture(
    moodle_site: Site, site_db: MoodleGateway, make_user: Callable[[], Awaitable[SiteUser]], tmp_path: Path
) -> None:
    ours, moodles = await make_user(), await make_user()
    image = encoded(photo(ours.username, (640, 480)), "JPEG")
    config = pictures_config(moodle_site, tmp_path, ours.dataroot)
    assert (await run_pictures(config, site_db, {f"{ours.username}.jpg": image})).counts == {"created": 1}
    await moodle_site.run_php(MOODLE_ICON % {"id": moodles.id, "image": _php(base64.b64encode(image).decode())})

    def shape(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows in id order, without what differs between two users' pictures made at different times."""
        varying = {"id", "contextid", "contenthash", "pathnamehash", "filesize", "timecreated", "timemodified", "bytes"}
        return [
            {k: v for k, v in row.items() if k not in varying} for row in sorted(rows.values(), key=lambda r: r["id"])
        ]

    made_by_toolsync, made_by_moodle = await stored_icons(site_db, ours), await stored_icons(site_db, moodles)
    assert shape(made_by_toolsync) == shape(made_by_moodle)
    seen_ours, seen_moodles = await see_picture(moodle_site, ours), await see_picture(moodle_site, moodles)
    check_area(seen_ours, made_by_toolsync, "jpg", "image/jpeg")
    check_area(seen_moodles, made_by_moodle, "jpg", "image/jpeg")  # the checks hold for Moodle's own picture too
    assert seen_ours["picture"] == made_by_toolsync["f1.jpg"]["id"]
    # Moodle's own user.picture is the id its f1 row got when first created. Where the EXIF remover of Moodle 4.5
    # (core_fileredact, on for a fresh install) re-stores every new JPEG, that row is deleted and the file created
    # again with a later id, so Moodle's value is a revision number only, no longer f1's id.
    assert 0 < seen_moodles["picture"] <= made_by_moodle["f1.jpg"]["id"]
