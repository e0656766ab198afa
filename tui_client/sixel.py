"""Encode a picture as DEC sixel graphics (pure: a Pillow image in, a string out).

The format, as terminals (xterm, foot, WezTerm, mlterm, Windows Terminal...) read it:

- ``ESC P 0;1;0 q`` opens the sixel string (P2=1: pixels not painted keep their colour);
  ``"1;1;W;H`` gives the size; ``ESC \\`` closes it.
- ``#n;2;r;g;b`` defines palette colour ``n`` in percent; ``#n`` selects it.
- The picture goes in bands six pixels high. In a band, each colour used is written as a
  row of characters, one per column: ``chr(63 + bits)``, bit ``k`` set when pixel row ``k``
  of the band has that colour. ``!count c`` repeats ``c``; ``$`` returns to the band's
  start for the next colour, ``-`` moves to the next band.

The image is quantised to at most 255 colours first (Pillow's fast octree).
"""

from __future__ import annotations

import re

from PIL import Image

MAX_COLOURS = 255
_RUN = re.compile(r"(.)\1{3,}")


def _compress(row: str) -> str:
    """Run-length encode runs of four or more identical sixel characters."""
    return _RUN.sub(lambda match: f"!{len(match.group(0))}{match.group(1)}", row)


def encode_sixel(image: Image.Image) -> str:
    """``image`` as one sixel string, ready to write to a terminal at the cursor."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    indexed = rgb.quantize(colors=MAX_COLOURS, method=Image.Quantize.FASTOCTREE)
    palette = indexed.getpalette() or []
    pixels = indexed.tobytes()
    used = sorted(set(pixels))
    out = ['\x1bP0;1;0q', f'"1;1;{width};{height}']
    for index in used:
        r, g, b = palette[3 * index: 3 * index + 3]
        out.append(f"#{index};2;{r * 100 // 255};{g * 100 // 255};{b * 100 // 255}")
    for top in range(0, height, 6):
        bits: dict[int, bytearray] = {}
        for row in range(min(6, height - top)):
            mask = 1 << row
            start = (top + row) * width
            for x, index in enumerate(pixels[start:start + width]):
                column = bits.get(index)
                if column is None:
                    column = bits[index] = bytearray(width)
                column[x] |= mask
        rows = [f"#{index}" + _compress(column.translate(_TO_SIXEL).decode("ascii").rstrip("?"))
                for index, column in sorted(bits.items())]
        out.append("$".join(rows))
        out.append("-")
    out.append("\x1b\\")
    return "".join(out)


#: byte value (0-63, the six bits of a column) -> its sixel character (63-126)
_TO_SIXEL = bytes((value + 63) if value < 64 else 63 for value in range(256))
