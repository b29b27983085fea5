"""videdit-mini: the built-in restyle model, trained here from scratch on procedural data.

``data`` (scene grammar, palettes, renderer, captions), ``tokenizer`` (a CLIP BPE
that knows the grammar's words), ``train`` (``python -m videdit.mini.train``),
``loop`` (the plumbing the training stages share), ``eval`` (``python -m videdit.mini.eval``), ``probe`` (the model cards' diagnostics),
``gpu`` (every stage on one CUDA GPU in a fixed budget). The trained components live in
``pipelines/videdit-mini/`` and load through the ordinary recipe ``pipelines/mini.toml``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

__all__ = ["MODEL_DIR", "known_words", "unknown_words"]

MODEL_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "videdit-mini"


@lru_cache(maxsize=1)
def known_words() -> frozenset:
    """The words the built-in model was trained on (``tokenizer/known_words.json``)."""
    path = MODEL_DIR / "tokenizer" / "known_words.json"
    try:
        return frozenset(json.loads(path.read_text()))
    except (OSError, ValueError):
        from .data import WORDS

        return frozenset(WORDS)


def unknown_words(prompt: str) -> list[str]:
    """Words of ``prompt`` the built-in model does not know, in order, without repeats (lower-cased).

    The prompt still runs (unknown words tokenise into sub-word pieces the model
    never saw in training, so they have little or no effect); the CLI warns with this list.
    """
    words = re.findall(r"[a-z]+(?:'[a-z]+)?", prompt.lower())
    known = known_words()
    return list(dict.fromkeys(w for w in words if w not in known))
