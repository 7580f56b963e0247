"""Each method's training data, built by the method's own construction pipeline from the model it trains.

When a model entry declares ``pipeline_source`` (the embedded ``tiny-llava`` does: the synthetic world's
``pref`` split, images never used in pretraining or evaluation), ``bench train`` / ``bench run`` without
``--data`` build the preference data the way each paper does, with :mod:`bench.data.pipelines` and the
offline annotation-grounded feedback model (:class:`bench.feedback.AnnotationFeedback`):

* ``ha-dpo``  — the base model describes each image, feedback corrects the hallucinations, style rewrites
  (desc pairs) + POPE-style yes/no pairs;
* ``povid``   — clean ground-truth answers with plausible co-occurring objects injected;
* ``hsa-dpo`` — the base model's descriptions, sentence-level detection with severity, rewrites;
* ``opa-dpo`` — sampled on-policy rollouts of the base model, minimally revised;
* ``dpo``     — the plain DPO baseline trains on the HSA-DPO pipeline's pairs without their severities
  (the comparison HSA-DPO's paper makes: same pairs, with and without severity weighting).

Which pipeline a method uses is the method's ``data_pipeline`` attribute (``None``: no pipeline; the
bundled method-agnostic pairs are used); the pipeline declares the file its method's loader reads
(``Pipeline.output``) and whether the model's generations are sampled (``Pipeline.sample_rollouts``). Output goes to ``OUT/<model>/_data/<pipeline>/`` with the
pipeline's ``summary.json`` and per-item cache (a rerun reuses it; another base checkpoint does not).
For the 7B/13B models, pass the released data with ``--data`` (``bench data fetch <method>-data``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.data.pipelines import PIPELINES, BuildOptions, load_source, run_pipeline
from bench.eval.generate import model_generate
from bench.feedback import AnnotationFeedback


def build_method_data(pipeline_name: str, entry: Any, data_root: Path, out_dir: Path, seed: int, device: str,
                      progress: bool = False) -> tuple[Path, dict]:
    """Run ``pipeline_name`` on the entry's ``pipeline_source``; returns (file for the loader, summary)."""
    spec = dict(entry.pipeline_source)
    pipeline = PIPELINES.get(pipeline_name)()
    source = load_source(spec.get("source", "coco"), data_root, split=spec.get("split", "train"),
                         limit=spec.get("limit"), seed=seed)
    feedback = AnnotationFeedback(cooccurrence=source.cooccurrence, frequency=source.frequency)
    batch = int(spec.get("batch_size", 8))
    generate, gid = None, "none"
    if pipeline.needs_model:
        ref = getattr(entry, "ref", entry.name)  # what resolves back to this entry (a local folder's path)
        generate, gid, _ = model_generate(ref, None, device, int(spec.get("max_new_tokens", 512)),
                                          pipeline.sample_rollouts,
                                          float(spec.get("temperature", 1.0)), batch, "float32", seed)
    opts = BuildOptions(out=Path(out_dir), feedback=feedback, generate=generate, generator_id=gid, seed=seed,
                        batch_size=batch, progress=progress, params=dict(spec.get("params", {})))
    summary = run_pipeline(pipeline, source, opts)
    return Path(out_dir) / pipeline.output, summary
