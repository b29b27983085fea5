"""A small CLIP BPE tokenizer whose merges build every grammar word as one token.

CLIP's byte-level BPE (vocab.json + merges.txt) with the 512 byte symbols (plain and
word-final ``</w>``), plus just enough merges that each word of
:data:`videdit.mini.data.WORDS` becomes a single token. Any other word still
tokenises, into smaller pieces (down to single bytes), so any prompt runs.
Loadable with ``CLIPTokenizer.from_pretrained(dir)``.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["build_tokenizer", "MAX_LENGTH"]

MAX_LENGTH = 32
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _write(out: Path, merges: list[tuple[str, str]]):
    base = list(_bytes_to_unicode().values())
    vocab = base + [b + "</w>" for b in base]
    for a, b in merges:
        vocab.append(a + b)
    vocab = list(dict.fromkeys(vocab + [BOS, EOS]))  # two merges may build the same string
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")


def _load(out: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(out), model_max_length=MAX_LENGTH, bos_token=BOS, eos_token=EOS,
                                         unk_token=EOS, pad_token=EOS)


def build_tokenizer(out, words) -> object:
    """Write the tokenizer files into ``out`` (a dir) and return the loaded ``CLIPTokenizer``."""
    out = Path(out)
    for stale in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
        (out / stale).unlink(missing_ok=True)  # a saved tokenizer.json would win over the files written below
    merges: list[tuple[str, str]] = []
    seen = set()
    for _ in range(8):  # add merges until every word is one token (later merges never break earlier words)
        _write(out, merges)
        tok = _load(out)
        bad = 0
        for w in words:
            pieces = tok.tokenize(w)
            if len(pieces) == 1:
                continue
            bad += 1
            acc = pieces[0]
            for p in pieces[1:]:
                if (acc, p) not in seen:
                    seen.add((acc, p))
                    merges.append((acc, p))
                acc = acc + p
        if not bad:
            break
    tok.save_pretrained(str(out))
    (out / "known_words.json").write_text(json.dumps(sorted(words), indent=0))
    return tok
