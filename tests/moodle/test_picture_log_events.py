"""A user picture leaves no row in Moodle's standard log: admin/tool/uploaduser/picture.php (process_new_icon() and
user.picture set) triggers no event, as traced on a Moodle 4.5 site; the pictures operation logs none either."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from PIL import Image

from tests.support.factories import unique
from tests.support.log_rows import log_mark, log_since, set_log_store
from tests.support.operation_files import header, inbox_file, report_of, run_file
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import run_operation


def one_picture_archive(username: str) -> bytes:
    image = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(image, "PNG")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{username}.png", image.getvalue())
    return buffer.getvalue()


async def test_a_picture_upload_logs_nothing(dump_site: tuple[Config, MoodleGateway], tmp_path: Path) -> None:
    config, gateway = dump_site
    await set_log_store(gateway, enabled=True)
    (tmp_path / "moodledata" / "filedir").mkdir(parents=True)
    config.set("operations.pictures.moodle_data_dir", str(tmp_path / "moodledata"))
    name = unique("logpicture")
    await run_file(config, gateway, "users", header("username", "firstname", "lastname") + f"{name};A;B\n")
    mark = await log_mark(gateway)

    path = inbox_file(config, "userpictures_1.zip", one_picture_archive(name))
    result = await run_operation(config, gateway, "pictures", path)

    assert result.counts == {"created": 1}, report_of(result)
    assert await log_since(gateway, mark) == []
