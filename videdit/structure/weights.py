"""Finding model weights locally and explaining, in one line, when they are not there.

Model-based structure signals take weights either from a local directory (the
``model=`` option, ``--model`` on the CLI) or from a Hugging Face hub id resolved
through the local Hugging Face cache. Two rules keep this predictable offline:

* Availability checks only look at the file system (``try_to_load_from_cache``);
  they never open a connection, so ``videdit structure --list`` cannot hang on a dead network.
* When ``HF_HUB_OFFLINE`` is set, or the hub does not accept a connection within
  a few seconds (:func:`hub_unavailable`), loads use ``local_files_only=True``;
  otherwise a missing file may be downloaded. Either way a failure becomes one
  :class:`~videdit.errors.MissingWeightsError` line, never a hub traceback.

Environment variables are read at call time (not at import time, as
``huggingface_hub.constants`` does) so that a changed ``HF_HOME`` or
``HF_HUB_OFFLINE`` — in a test, or set by the CLI — is honoured.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from ..errors import MissingWeightsError

__all__ = [
    "hub_offline",
    "hub_unavailable",
    "hub_cache_dir",
    "looks_like_path",
    "cached_file",
    "local_missing",
    "missing_weights_error",
    "missing_weights_text",
    "first_line",
]

_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """True if ``HF_HUB_OFFLINE`` (or the older ``TRANSFORMERS_OFFLINE``) is set truthy."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_unavailable(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be asked now, or None: ``HF_HUB_OFFLINE``, or no connection within ``timeout`` s.

    Asked only when a download is about to be tried: on a machine without network
    huggingface_hub retries every file five times with backoff, which made an
    offline load take minutes (4 for an SD 1.5 recipe) before its one-line error.
    """
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    # Behind a proxy the client connects to the proxy, so that is what must answer.
    proxy = next((os.environ[v] for v in (f"{url.scheme.upper()}_PROXY", f"{url.scheme}_proxy", "ALL_PROXY",
                                          "all_proxy") if os.environ.get(v)), None)
    if proxy:
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = url.hostname or "huggingface.co"
    try:
        socket.create_connection((host, url.port or (80 if url.scheme == "http" else 443)), timeout=timeout).close()
    except OSError as err:
        return f"{host} cannot be reached ({err.strerror or err})"
    return None


def hub_cache_dir() -> str:
    """The hub cache directory, resolved the way huggingface_hub does, but now."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "huggingface", "hub")


def looks_like_path(model: str) -> bool:
    """True if ``model`` is meant as a directory rather than a hub id.

    Hub ids are ``name`` or ``org/name``; anything existing on disk, absolute,
    starting with ``.``/``~``, or with more than one ``/`` is a path. Deciding this
    up front lets a mistyped directory say "directory not found" instead of an
    obscure "invalid repo id".
    """
    return (
        os.path.exists(model)
        or os.path.isabs(model)
        or model.startswith((".", "~"))
        or model.count("/") > 1
        or os.sep != "/" and os.sep in model
    )


def cached_file(repo_id: str, filename: str) -> str | None:
    """Path of ``filename`` of hub repo ``repo_id`` in the local cache, or None.

    Never touches the network. An invalid repo id counts as not cached.
    """
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache_dir())
    except Exception:  # HFValidationError for malformed ids, OSError for odd caches
        return None
    # A non-str return is the "known not to exist" sentinel: treat as absent.
    return path if isinstance(path, str) and os.path.isfile(path) else None


def local_missing(model: str, filenames) -> list[str]:
    """The files of ``filenames`` that neither the directory nor the cache holds.

    ``model`` is a directory path or a hub id; ``filenames`` is an iterable of
    relative file names. Empty result = all present locally.
    """
    if looks_like_path(model):
        root = os.path.expanduser(model)
        return [f for f in filenames if not os.path.isfile(os.path.join(root, f))]
    return [f for f in filenames if cached_file(model, f) is None]


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's text (hub errors are multi-line)."""
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__


def missing_weights_text(model: str, files, cause: str | None = None, skipped: str | None = None) -> str:
    """One line saying which weights are missing and how to provide them.

    ``files``: the missing file names (shown so the user knows what to fetch);
    ``cause``: optional short reason from a failed load (first line only);
    ``skipped``: why no download was tried (:func:`hub_unavailable`).
    """
    files = list(files)
    what = f" ({', '.join(files)})" if files else ""
    if looks_like_path(model):
        where = (
            f"model directory '{model}' does not exist"
            if not os.path.isdir(os.path.expanduser(model))
            else f"model directory '{model}' lacks{what or ' the weights'}"
        )
        how = "pass a directory holding these files with model=DIR (CLI: --model DIR)"
    else:
        where = f"'{model}'{what} is not in the Hugging Face cache ({hub_cache_dir()})"
        get = f"hf download {model} {' '.join(files)}".rstrip()
        how = (
            f"download it once with network access (`{get}`) or pass a local directory "
            f"with model=DIR (CLI: --model DIR)"
        )
        skipped = skipped or ("HF_HUB_OFFLINE is set" if hub_offline() else None)
        if skipped:
            how += f"; {skipped}, so no download was tried"
    msg = f"model weights not available: {where}; {how}"
    if cause:
        msg += f" [{cause}]"
    return msg


def missing_weights_error(signal: str, model: str, files, cause: str | None = None,
                          skipped: str | None = None) -> MissingWeightsError:
    """:class:`MissingWeightsError` for ``signal`` with :func:`missing_weights_text`."""
    return MissingWeightsError(f"{signal}: {missing_weights_text(model, files, cause, skipped)}")
