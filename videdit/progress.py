"""Progress bars: tqdm on stderr, shown only on a terminal unless forced.

Kept in one place so every long step (decode, structure, denoise, encode) looks
the same and library users can silence them all with ``VIDEDIT_PROGRESS=0``.
"""

from __future__ import annotations

import os

__all__ = ["progress"]


def progress(total: int | None = None, desc: str = "", unit: str = "it", leave: bool = False):
    """A tqdm bar; ``VIDEDIT_PROGRESS=0`` hides it, ``=1`` forces it, unset: only on a TTY."""
    from tqdm.auto import tqdm

    flag = os.environ.get("VIDEDIT_PROGRESS", "")
    disable = {"0": True, "1": False}.get(flag, None)  # None: tqdm hides it off a TTY
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=disable, dynamic_ncols=True)
