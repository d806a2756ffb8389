"""How evidence looks: one display colour per explained class, shared by the SEG segments and the SC overlay."""

from __future__ import annotations

#: One colour per segment (class), RGB; the SC overlay uses the same colours.
SEGMENT_COLOURS = ((255, 64, 64), (64, 160, 255), (255, 200, 0), (64, 220, 120), (200, 90, 255), (0, 220, 220))


def segment_colour(position: int) -> tuple[int, int, int]:
    """The RGB colour of class ``position``."""
    return SEGMENT_COLOURS[position % len(SEGMENT_COLOURS)]
