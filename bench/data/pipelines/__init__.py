"""Preference-data construction pipelines, one per method, each writing that method's released format.

``python -m bench data build METHOD --model M --out DIR`` (see :mod:`bench.data.cli`). Registry
``PIPELINES`` (entry-point group ``bench.pipelines``) maps a method name to its pipeline class:

* ``ha-dpo``  — :mod:`.ha_dpo`  (desc_data.json + pope_data.json)
* ``povid``   — :mod:`.povid`   (POVID JSON list with conversations / rejected_conversations)
* ``hsa-dpo`` — :mod:`.hsa_dpo` (preference JSONL with rejected_score + detection JSONL)
* ``opa-dpo`` — :mod:`.opa_dpo` (OPA-DPO records with the AI_json_report string)

Shared machinery (per-item cache, resume, summary) in :mod:`.base`; inputs in :mod:`.sources`;
feedback models in :mod:`bench.feedback`.
"""

from __future__ import annotations

from bench.registry import Registry

from bench.data.pipelines.base import BuildOptions, Pipeline, format_summary, run_pipeline
from bench.data.pipelines.ha_dpo import HaDpoPipeline
from bench.data.pipelines.hsa_dpo import HsaDpoPipeline
from bench.data.pipelines.opa_dpo import OpaDpoPipeline
from bench.data.pipelines.povid import PovidPipeline
from bench.data.pipelines.sources import AnnotationSet, coco_source, load_source, vg_source

PIPELINES: Registry = Registry("data pipeline", "bench.pipelines")
for _cls in (HaDpoPipeline, PovidPipeline, HsaDpoPipeline, OpaDpoPipeline):
    PIPELINES.add(_cls.name, _cls)

__all__ = ["PIPELINES", "AnnotationSet", "BuildOptions", "Pipeline", "coco_source", "format_summary",
           "load_source", "run_pipeline", "vg_source"]
