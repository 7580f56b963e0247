"""Fast paths give the same text as HF generate at batch 1 without caching (float32, CPU)."""

from bench.benchmark import EvalItem, GenerationSettings
from bench.eval.engine import generate_batch, generate_with_prefix


def _tiny(monkeypatch, tmp_path):
    from bench.models.llava import make_preprocessor
    from bench.plugins import load_plugins
    from bench.registry import MODELS

    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "data"))
    load_plugins()
    entry = MODELS.get("tiny-llava")
    model, proc = entry.load()
    return model, make_preprocessor(proc, model.config), entry.default_data_root()


def test_prefix_reuse_and_batching_match_batch1_generate(monkeypatch, tmp_path):
    model, pre, root = _tiny(monkeypatch, tmp_path)
    images = sorted((root / "coco" / "val2014").glob("*.png"))[:3]
    questions = ["Is there a fork in the image?", "Is there a dining table in the image?",
                 "Is there an elephant in the image?", "Describe this image in detail."]
    gen = GenerationSettings(max_new_tokens=24)
    for img in images:
        items = [EvalItem(f"{img.name}/{i}", str(img), q) for i, q in enumerate(questions)]
        reference = [generate_batch(model, pre, [it], gen, "cpu", use_hf_generate=True)[0] for it in items]
        assert generate_with_prefix(model, pre, items, gen, "cpu") == reference
        assert generate_batch(model, pre, items, gen, "cpu") == reference
