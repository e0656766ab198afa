"""Timeline pictures by terminal protocol: the choice, the sixel encoder, and what the timeline draws."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from PIL import Image
from textual.geometry import Region
from textual.pilot import Pilot

from tui_client.matrix import ApiResponse
from tui_client.sixel import encode_sixel
from tui_client.widgets import Timeline
from tui_client.widgets.inline_image import (
    MAX_HEIGHT,
    MAX_WIDTH,
    InlineImage,
    choose_protocol,
    fit_cells,
    image_protocol,
)

from .conftest import make_app, settle
from .sync_data import BOB, T0, ev, initial_sync, joined, sync

GENERAL = "!general:example.org"
STRIPES = [(200, 30, 30), (30, 160, 60), (40, 80, 220)]


def stripes(width: int = 60, height: int = 45) -> Image.Image:
    """Three horizontal bands of colour."""
    image = Image.new("RGB", (width, height))
    for y in range(height):
        for x in range(width):
            image.putpixel((x, y), STRIPES[min(2, 3 * y // height)])
    return image


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def decode_sixel(data: str) -> tuple[int, int, list[list[tuple[int, int, int] | None]]]:
    """A small sixel reader for the tests: (declared width, height, pixels as RGB percent)."""
    assert data.startswith("\x1bP") and data.endswith("\x1b\\")
    body = data[data.index("q") + 1:-2]
    raster = re.match(r'"1;1;(\d+);(\d+)', body)
    assert raster is not None
    width, height = int(raster.group(1)), int(raster.group(2))
    body = body[raster.end():]
    pixels: list[list[tuple[int, int, int] | None]] = [[None] * width for _ in range(height)]
    palette: dict[int, tuple[int, int, int]] = {}
    colour = 0
    x = top = 0
    for token in re.finditer(r"#(\d+);2;(\d+);(\d+);(\d+)|#(\d+)|!(\d+)([?-~])|([?-~])|(\$)|(-)", body):
        define, select, count, repeated, single, carriage, newline = (
            token.group(1), token.group(5), token.group(6), token.group(7), token.group(8), token.group(9),
            token.group(10))
        if define is not None:
            palette[int(define)] = (int(token.group(2)), int(token.group(3)), int(token.group(4)))
        elif select is not None:
            colour = int(select)
        elif carriage:
            x = 0
        elif newline:
            x, top = 0, top + 6
        else:
            char, times = (repeated, int(count)) if repeated else (single, 1)
            bits = ord(char) - 63
            for column in range(x, x + times):
                for row in range(6):
                    if bits & (1 << row) and top + row < height:
                        pixels[top + row][column] = palette[colour]
            x += times
    return width, height, pixels


def test_the_protocol_is_the_terminals_unless_overridden() -> None:
    assert choose_protocol("kitty") == "kitty"
    assert choose_protocol("sixel") == "sixel"
    assert choose_protocol("halfcell") == "halfcell"
    assert choose_protocol("unicode") == "halfcell"  # anything else: half-cells
    assert choose_protocol("kitty", "halfcell") == "halfcell"
    assert choose_protocol("halfcell", " Sixel ") == "sixel"
    assert choose_protocol("sixel", "auto") == "sixel"
    # Tests run without a terminal: textual-image found none, so half-cells, unless asked.
    assert image_protocol({}) == "halfcell"
    assert image_protocol({"PARLEY_TUI_IMAGES": "kitty"}) == "kitty"


@pytest.mark.parametrize("protocol", ["kitty", "sixel", "halfcell"])
def test_pictures_fit_the_same_box_whatever_the_protocol(protocol: Any) -> None:
    for width, height in [(1280, 720), (40, 30), (30, 900), (3000, 10)]:
        columns, rows = fit_cells(width, height, protocol, (10, 20))
        assert 1 <= columns <= MAX_WIDTH and 1 <= rows <= MAX_HEIGHT
    assert fit_cells(1280, 720, "sixel", (10, 20)) == (28, 8)  # 16:9 at 1:2 cells, height-bound
    assert fit_cells(800, 100, "kitty", (10, 20)) == (40, 2)  # width-bound
    assert fit_cells(40, 30, "halfcell", (10, 20)) == (21, 8)  # a pixel per column, two per row


def test_sixel_encoding_reads_back_as_the_picture() -> None:
    image = stripes(37, 20)  # neither dimension a multiple of six
    width, height, pixels = decode_sixel(encode_sixel(image))
    assert (width, height) == (37, 20)
    for y in range(height):
        for x in range(width):
            expected = tuple(channel * 100 // 255 for channel in image.getpixel((x, y)))
            got = pixels[y][x]
            assert got is not None and all(abs(a - b) <= 2 for a, b in zip(got, expected, strict=True)), (x, y, got)
    assert "!37" in encode_sixel(image)  # runs are compressed


def test_undecodable_bytes_draw_a_placeholder_in_every_protocol() -> None:
    for protocol in ("kitty", "sixel", "halfcell"):
        picture = InlineImage("mxc://x/y", b"not a picture", protocol=protocol, cell=(10, 20))  # type: ignore[arg-type]
        assert not picture.ok and picture.error


def picture_syncs() -> tuple[dict[str, Any], dict[str, Any]]:
    image = ev("$pic", BOB, ts=T0 + 200_000, content={
        "msgtype": "m.image", "body": "stripes.png", "url": "mxc://example.org/stripes",
        "info": {"mimetype": "image/png", "size": 1000, "w": 60, "h": 45}})
    return initial_sync(), sync("s2", join={GENERAL: joined([image])})


async def picture_app(protocol: Any) -> Any:
    first, second = picture_syncs()
    app, transport = make_app([first, second], image_protocol=protocol)
    transport.route("GET", r"/_matrix/client/v1/media/download/example\.org/stripes",
                    ApiResponse(200, png(stripes()), {"content-type": "image/png"}))
    return app


async def wait_for_picture(pilot: Pilot) -> tuple[Timeline, InlineImage]:
    await settle(pilot, "s2")
    timeline = pilot.app.screen.query_one(Timeline)
    for _ in range(200):
        if "$pic" in timeline.inline_images():
            break
        await pilot.pause(0.02)
    await pilot.pause()
    return timeline, timeline.inline_images()["$pic"]


def picture_x(strip: Any) -> int:
    """Where the first cell of a sixel picture is in a rendered line."""
    x = 0
    for segment in strip:
        if "parley-sixel" in (segment.style.meta if segment.style else {}):
            return x
        x += segment.cell_length
    raise AssertionError("no picture in this line")


def sixel_writes(lines: list[Any]) -> list[tuple[int, str]]:
    """(line index, text) of every raw control write in rendered lines."""
    return [(index, segment.text) for index, strip in enumerate(lines) for segment in strip if segment.control]


async def test_sixel_pictures_are_written_over_their_cells_cropped_to_what_is_drawn() -> None:
    app = await picture_app("sixel")
    async with app.run_test(size=(100, 30)) as pilot:
        timeline, picture = await wait_for_picture(pilot)
        assert picture.protocol == "sixel" and picture.ok
        columns, rows = picture.cells
        cell_width, cell_height = picture.cell
        origin = app.screen.find_widget(timeline).region
        lines = timeline.render_lines(Region(0, 0, timeline.size.width, timeline.size.height))
        # The picture's rows: blank cells carrying its key.
        marked = [index for index, strip in enumerate(lines)
                  if any("parley-sixel" in (segment.style.meta if segment.style else {}) for segment in strip)]
        assert len(marked) == rows and marked == list(range(marked[0], marked[0] + rows))
        writes = sixel_writes(lines)
        assert [index for index, _ in writes] == [marked[-1]] * 3  # written after the last row's cells
        move, sixel, back = (text for _, text in writes)
        x = picture_x(lines[marked[0]])
        assert x >= 6  # after the indent under the time
        assert move == f"\x1b[{origin.y + marked[0] + 1};{origin.x + x + 1}H"  # (1-based)
        assert back == f"\x1b[{origin.y + marked[-1] + 1};{origin.x + lines[marked[-1]].cell_length + 1}H"
        width, height, pixels = decode_sixel(sixel)
        assert (width, height) == (columns * cell_width, rows * cell_height)
        assert pixels[0][0] is not None and pixels[-1][-1] is not None

        # A redraw of only some lines writes only those rows of the picture.
        part = timeline.render_lines(Region(0, marked[0] + 2, timeline.size.width, 3))
        (_, move), (_, sixel), _ = sixel_writes(part)
        assert move == f"\x1b[{origin.y + marked[0] + 2 + 1};{origin.x + x + 1}H"
        assert decode_sixel(sixel)[:2] == (columns * cell_width, 3 * cell_height)

        # Under a dialog the picture is not drawn over it.
        await pilot.press("ctrl+k")
        await pilot.pause()
        assert sixel_writes(timeline.render_lines(Region(0, 0, timeline.size.width, timeline.size.height))) == []


async def test_kitty_pictures_are_placeholder_characters_after_one_transmission(capfd: Any) -> None:
    app = await picture_app("kitty")
    async with app.run_test(size=(100, 30)) as pilot:
        timeline, picture = await wait_for_picture(pilot)
        assert picture.protocol == "kitty" and picture.ok
        columns, rows = picture.cells
        lines = timeline.render_lines(Region(0, 0, timeline.size.width, timeline.size.height))
        placeholder_rows = [strip.text for strip in lines if "\U0010eeee" in strip.text]
        assert len(placeholder_rows) == rows
        assert all(row.count("\U0010eeee") == columns for row in placeholder_rows)
        assert sixel_writes(lines) == []
    sent = capfd.readouterr().out
    assert sent.count("\x1b_Ga=p,") == 1  # one virtual placement for the one picture...
    assert "\x1b_Gi=" in sent  # ...after its pixels were sent


async def test_halfcell_pictures_stay_the_default_for_tests_and_snapshots() -> None:
    app = await picture_app("halfcell")
    async with app.run_test(size=(100, 30)) as pilot:
        timeline, picture = await wait_for_picture(pilot)
        assert picture.protocol == "halfcell" and picture.ok
        lines = timeline.render_lines(Region(0, 0, timeline.size.width, timeline.size.height))
        assert any("▄" in strip.text or "▀" in strip.text for strip in lines)
        assert sixel_writes(lines) == []
