"""Where NLTK finds its data packages, and a clear error when one is missing.

NLTK looks for data in the folders of ``nltk.data.path``; NLTK itself puts the entries of the
``NLTK_DATA`` environment variable there when it is imported. ``bench`` adds, at the end of that
list (so a user's own NLTK setup keeps priority):

1. the folders of ``BENCH_NLTK_DATA`` (``os.pathsep``-separated), the variable ``bench`` documents;
2. the folders of ``NLTK_DATA`` again, in case it was set after ``nltk`` was imported;
3. any extra folders a caller passes (e.g. ``<data root>/nltk_data``, where
   ``python -m bench data fetch nltk`` downloads to);
4. last, the copy shipped inside the package (``bench/assets/nltk_data``: English ``punkt_tab``,
   ``averaged_perceptron_tagger_eng`` and WordNet 3.0 as zips, licences in its ``SOURCES.md``), so the
   embedded default needs no variable and no download.

Nothing is ever downloaded here (the build machines are offline): :func:`require` raises
:class:`bench.errors.BenchError` with a one-line, actionable message when a package is missing.

Package names follow the installed NLTK: 3.9 and later read ``punkt_tab`` and
``averaged_perceptron_tagger_eng`` (JSON/tab files); older releases read the ``punkt`` and
``averaged_perceptron_tagger`` pickles. ``wordnet`` is the same for both (a folder or ``wordnet.zip``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from bench.errors import BenchError

ENV_VAR = "BENCH_NLTK_DATA"
PACKAGED = Path(__file__).resolve().parent / "assets" / "nltk_data"
FETCH_HINT = "python -m bench data fetch nltk"

# logical name -> (resource paths tried in order) for NLTK >= 3.9 and for older releases
_RESOURCES_NEW = {
    "tokenizer": ("punkt_tab", ("tokenizers/punkt_tab/english/",)),
    "tagger": ("averaged_perceptron_tagger_eng", ("taggers/averaged_perceptron_tagger_eng/",)),
    "wordnet": ("wordnet", ("corpora/wordnet", "corpora/wordnet.zip")),
}
_RESOURCES_OLD = {
    "tokenizer": ("punkt", ("tokenizers/punkt/english.pickle", "tokenizers/punkt/PY3/english.pickle")),
    "tagger": ("averaged_perceptron_tagger",
               ("taggers/averaged_perceptron_tagger/averaged_perceptron_tagger.pickle",)),
    "wordnet": ("wordnet", ("corpora/wordnet", "corpora/wordnet.zip")),
}


def _nltk_is_new() -> bool:
    import nltk

    parts = []
    for piece in nltk.__version__.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) >= (3, 9)


def resource_table() -> dict[str, tuple[str, tuple[str, ...]]]:
    """logical name (tokenizer, tagger, wordnet) -> (NLTK package name, resource paths) for this NLTK."""
    return dict(_RESOURCES_NEW if _nltk_is_new() else _RESOURCES_OLD)


def _env_folders() -> list[str]:
    out: list[str] = []
    for var in (ENV_VAR, "NLTK_DATA"):
        for entry in (os.environ.get(var) or "").split(os.pathsep):
            if entry.strip():
                out.append(str(Path(entry.strip()).expanduser()))
    return out


def configure(extra: Iterable[str | os.PathLike] = ()) -> list[str]:
    """Append ``BENCH_NLTK_DATA``, ``NLTK_DATA`` and ``extra`` folders to ``nltk.data.path`` (once each).

    Returns the resulting search path. Safe to call many times; environment changes are picked up.
    """
    import nltk

    for folder in [*_env_folders(), *(str(Path(p)) for p in extra)]:
        if folder not in nltk.data.path:
            nltk.data.path.append(folder)
    packaged = str(PACKAGED)
    if PACKAGED.is_dir():  # always the last resort: a user's own copy keeps priority
        if packaged in nltk.data.path:
            nltk.data.path.remove(packaged)
        nltk.data.path.append(packaged)
    return list(nltk.data.path)


def _found(paths: Sequence[str]) -> bool:
    import nltk

    for res in paths:
        try:
            nltk.data.find(res)
            return True
        except LookupError:
            continue
    return False


def missing(names: Iterable[str], extra: Iterable[str | os.PathLike] = ()) -> list[str]:
    """NLTK package names (of the logical ``names``) that cannot be found after :func:`configure`."""
    configure(extra)
    table = resource_table()
    out = []
    for name in names:
        if name not in table:
            raise ValueError(f"unknown NLTK resource {name!r}; known: {sorted(table)}")
        package, paths = table[name]
        if not _found(paths):
            out.append(package)
    return out


def require(names: Iterable[str], extra: Iterable[str | os.PathLike] = (), purpose: str = "this step") -> None:
    """Raise :class:`BenchError` (one line, with the fix) unless every named resource is installed.

    ``names`` are logical names: ``tokenizer``, ``tagger``, ``wordnet``.
    """
    absent = missing(names, extra)
    if absent:
        import nltk

        shown = ", ".join(nltk.data.path[:6]) + (", ..." if len(nltk.data.path) > 6 else "")
        raise BenchError(
            f"NLTK data missing for {purpose}: {', '.join(absent)} (NLTK {nltk.__version__} searched {shown})."
            f" Fix: on a connected machine run `{FETCH_HINT}` (downloads into <data root>/nltk_data), then"
            f" export {ENV_VAR}=<that folder>; or set {ENV_VAR} to an existing copy holding"
            f" {', '.join(absent)} in NLTK's folder layout.")
