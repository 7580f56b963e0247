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


# ------------------------------------------------------------------ tiny model + preference records
@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory):
    """An untrained tiny llava-hf checkpoint (``bench.models.tiny_llava.build_tiny_llava``, seed 0), built
    once per session (a few seconds: it trains its BPE tokenizer)."""
    from bench.models.tiny_llava import build_tiny_llava

    out = tmp_path_factory.mktemp("tiny_llava")
    build_tiny_llava(out, seed=0)
    return out


@pytest.fixture
def tiny_llava_loader(tiny_llava_dir):
    """``base_loader`` for ``bench.train.loop.train``: a fresh float32 CPU (model, LlavaPreprocessor) per call."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from bench.models.llava import make_preprocessor

    def load():
        model = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir)
        return model, make_preprocessor(AutoProcessor.from_pretrained(tiny_llava_dir), model.config)

    return load


PAIR_TEXTS = [  # (chosen, rejected) in the synthetic world's words: short sequences for the tiny model
    ("The image shows a dog, a cat and a dog. There is a cup.", "The image shows a dog, a cup and a bottle."),
    ("Yes", "No"),
    ("There is a car in the image.", "There is a bus in the image. There is a fork."),
    ("The image shows a chair, a cup and a chair.", "The image shows a chair, a couch and a chair."),
    ("No", "Yes"),
    ("There is a fork in the image.", "There is a dining table in the image."),
]


@pytest.fixture
def make_preference_records(tmp_path):
    """Factory: ``make(n, scores=True, size=(40, 28))`` → ``n`` PreferenceRecords with small PNG images
    written under ``tmp_path/images`` (distinct colours, non-square so padding is exercised) and texts the
    tiny model's tokenizer knows; ``rejected_score`` 1..3 when ``scores``."""
    from PIL import Image

    from bench.data.preference import PreferenceRecord

    def make(n: int = 4, scores: bool = True, size=(40, 28)):
        (tmp_path / "images").mkdir(exist_ok=True)
        out = []
        for i in range(n):
            img = tmp_path / "images" / f"{i}.png"
            Image.new("RGB", size, (37 * i % 256, 120 + 9 * i, 200 - 23 * i % 200)).save(img)
            chosen, rejected = PAIR_TEXTS[i % len(PAIR_TEXTS)]
            question = "Is there a dog in the image?" if chosen in ("Yes", "No") else "Describe this image in detail."
            out.append(PreferenceRecord(f"r{i}", str(img), question, chosen, rejected,
                                        rejected_score=float(i % 3 + 1) if scores else None))
        return out

    return make
