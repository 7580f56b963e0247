"""Pluggable word-similarity backends for AMBER's near-synonym step.

AMBER's generative scorer (``junyangwang0410/AMBER@534babf:inference.py``, ``check_synonyms_word``) calls
``nlp(a).similarity(nlp(b)) > threshold`` with spaCy's ``en_core_web_lg`` and threshold 0.8, for every
extracted noun that is neither a global safe word nor a literal truth/association word, against every
hallucination word and then every truth word of the item (first hit wins). A backend answers that one
question, ``similar(a, b) -> bool``; :data:`BACKENDS` maps the names protocols declare to backends:

* ``spacy:en_core_web_lg`` — the reference's step (cosine of the average word vectors, spaCy's
  ``Doc.similarity``; a word without a vector has similarity 0). Needs ``pip install ".[amber]"`` and
  ``python -m spacy download en_core_web_lg``; :meth:`SpacySimilarity.missing` says what is absent.
* ``none`` — the step disabled: never similar. Protocols using it carry ``-nosim`` in their name; their
  numbers differ from the reference's wherever a noun would have matched only by similarity.

Docs are cached per word (the reference re-parses each word on every call; the result is the same).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

from bench.errors import BenchError

SPACY_INSTALL = ('pip install ".[amber]" (or pip install "spacy>=3.7") && python -m spacy download {model}')


class NoSimilarity:
    """The similarity step switched off (``none``)."""

    name = "none"
    never = True

    def missing(self) -> list[str]:
        return []

    def similar(self, a: str, b: str) -> bool:
        return False


class SpacySimilarity:
    """spaCy ``Doc.similarity`` of two single words against a threshold (the reference's 0.8)."""

    never = False

    def __init__(self, model: str = "en_core_web_lg", threshold: float = 0.8) -> None:
        self.model = model
        self.threshold = float(threshold)
        self.name = f"spacy:{model}"
        self._nlp = None
        self._docs: dict[str, object] = {}

    def missing(self) -> list[str]:
        """Human-readable missing pieces (empty when spaCy and the model are installed)."""
        if importlib.util.find_spec("spacy") is None:
            return [f"spaCy is not installed (AMBER's similarity step): {SPACY_INSTALL.format(model=self.model)}"]
        import spacy.util  # optional dependency, only once it is known to be installed

        if not spacy.util.is_package(self.model) and not Path(self.model).is_dir():  # a package or a saved model folder
            return [f"spaCy model {self.model} is not installed (AMBER's similarity step): python -m spacy download"
                    f" {self.model}"]
        return []

    def _doc(self, word: str):
        doc = self._docs.get(word)
        if doc is None:
            if self._nlp is None:
                import spacy  # optional dependency (the `amber` extra)

                self._nlp = spacy.load(self.model)
            doc = self._docs[word] = self._nlp(word)
        return doc

    def similar(self, a: str, b: str) -> bool:
        return self._doc(a).similarity(self._doc(b)) > self.threshold


BACKENDS: dict[str, Callable[[float], object]] = {
    "none": lambda threshold: NoSimilarity(),
    "spacy:en_core_web_lg": lambda threshold: SpacySimilarity("en_core_web_lg", threshold),
}


def make_backend(name: str, threshold: float = 0.8):
    """The backend registered under ``name`` (``none`` or ``spacy:<model>``)."""
    if name in BACKENDS:
        return BACKENDS[name](threshold)
    if name.startswith("spacy:"):
        return SpacySimilarity(name.split(":", 1)[1], threshold)
    raise BenchError(f"unknown AMBER similarity backend {name!r}; known: {', '.join(BACKENDS)} or spacy:<model>")
