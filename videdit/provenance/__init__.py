"""Provenance of generated video: C2PA Content Credentials, an invisible watermark, verification.

Everything ``videdit restyle``/``generate`` write carries (see issue 6):

* a signed C2PA manifest (:mod:`.credentials`) saying it was made with a trained
  algorithm, by which tool, version and recipe, from which prompt (unless opted
  out) and, for restyles, from which source file (an ingredient);
* an invisible watermark in the frames (:mod:`.watermark`) carrying a fixed
  ``videdit`` sync pattern and the 32-bit :attr:`Provenance.payload_id` that is also
  written in the manifest, so footage whose metadata was stripped still links back.

Producers describe an output with one :class:`Provenance` and pass it to
:class:`videdit.io.VideoWriter` / :func:`videdit.write_video` (``provenance=``);
:func:`verify` reads both back. ``videdit structure`` outputs are analysis, not
generated content, and are written without provenance.
"""

from __future__ import annotations

import importlib
import secrets
from dataclasses import dataclass, field

__all__ = ["Provenance", "new_payload_id", "verify", "VerifyReport", "SafetyFilter"]

ACTIONS = ("created", "edited")


def new_payload_id() -> str:
    """A fresh random 32-bit id as 8 lowercase hex characters (links watermark <-> manifest)."""
    return secrets.token_hex(4)


def _tool_version() -> str:
    from .. import __version__

    return __version__


@dataclass(frozen=True)
class Provenance:
    """How an output video was made; the one object writers need for credentials + watermark.

    ``action``: ``"created"`` (text-to-video: digitalSourceType trainedAlgorithmicMedia)
    or ``"edited"`` (restyle of ``source``: compositeWithTrainedAlgorithmicMedia).
    ``recipe``: pipeline recipe name. ``prompt``: the text prompt or None.
    ``include_prompt``: False for ``--no-prompt-in-credentials`` (the manifest then
    says the prompt was withheld). ``source``: path of the input video, added as
    the parent ingredient. ``watermark``: False only for ``--no-watermark``
    (research use), which the manifest records. ``payload_id``: 8 hex chars, in
    both the watermark and the manifest.
    """

    action: str = "created"
    recipe: str | None = None
    prompt: str | None = None
    include_prompt: bool = True
    source: str | None = None
    watermark: bool = True
    payload_id: str = field(default_factory=new_payload_id)
    tool_version: str = field(default_factory=_tool_version)

    def __post_init__(self):
        from ..errors import UsageError

        if self.action not in ACTIONS:
            raise UsageError(f"provenance action must be one of {', '.join(ACTIONS)} (got {self.action!r})")
        if self.action == "edited" and not self.source:
            raise UsageError("provenance action 'edited' needs the source video path")
        pid = self.payload_id
        if len(pid) != 8 or any(c not in "0123456789abcdef" for c in pid):
            raise UsageError(f"provenance payload_id must be 8 lowercase hex characters (got {pid!r})")

    @property
    def digital_source_type(self) -> str:
        """IPTC digital source type URI (https://cv.iptc.org/newscodes/digitalsourcetype/)."""
        base = "http://cv.iptc.org/newscodes/digitalsourcetype/"
        return base + ("trainedAlgorithmicMedia" if self.action == "created" else "compositeWithTrainedAlgorithmicMedia")


_LAZY = {"verify": ".report", "VerifyReport": ".report", "SafetyFilter": ".safety"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
