import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = REPO / "tests" / "data"


def nltk_available() -> bool:
    try:
        from metrics.chair_words import ensure_nltk

        ensure_nltk()
        return True
    except Exception:
        return False


requires_nltk = pytest.mark.skipif(
    not nltk_available(),
    reason="NLTK data (punkt_tab, averaged_perceptron_tagger_eng, wordnet) not found: set BENCH_NLTK_DATA"
           " (CI points it at ../shared/reference/nltk_data) or run `python -m bench data fetch nltk`")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    from bench.data.synthetic import prepare_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    prepare_synthetic(root, seed=0, n_train=40, n_eval=12, n_pref=24)
    return root
