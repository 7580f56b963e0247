"""What a training method declares, and what the loop hands back to it.

A method is a registry entry (``@METHODS.register("dpo")``) with a config dataclass and a list of
:class:`Stage`. A stage names the sequences it needs — a response taken from the preference
record, paired with an image variant (``clean``, or a transform such as POVID's diffusion noise
or OPA-DPO's pixel mask) — and a loss over their per-token log-probabilities under the policy
and the reference. The loop owns everything else: tokenisation with the expanded image tokens,
batching, padding, label masks, the vision tower (run once per distinct image per step), the
reference cache, optimisation, checkpoints and logging.

Every stage starts from the previous stage's model with its adapter merged, gets a fresh LoRA,
and its reference is that starting model (adapters disabled). This covers POVID (stage 2 on the
merged stage-1 model) and OPA-DPO (DPO whose reference is the OPA-SFT model). HA-DPO/HSA-DPO train the
projector in place, and their seeds' reference runs on the policy's *current* projector
(``TrainConfig.reference_projector="policy"``; ``"frozen"`` keeps the starting projector instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from bench.data.preference import PreferenceRecord

# An image transform: (pixel tensor [3,H,W] in [0,1] *before* CLIP processing or normalised
# pixel_values after, see ImageVariant.space, a torch.Generator seeded per sample) -> tensor.
ImageTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class ImageVariant:
    """A named image input. ``space`` is ``raw`` (float RGB in [0,1], before pad/CLIP) or ``pixel``
    (the normalised ``pixel_values`` the vision tower sees). ``fixed`` variants are deterministic per
    sample (seeded by sample id) so their reference log-probs can be cached."""

    name: str
    transform: ImageTransform | None = None
    space: str = "raw"
    fixed: bool = True


CLEAN = ImageVariant("clean")


@dataclass(frozen=True)
class Sequence:
    """One (response, image variant) sequence the loss needs, e.g. chosen on the clean image.

    ``tokens`` (optional) builds the response token ids itself, ``(record, preprocessor) -> ids``
    without the closing ``</s>`` (the loop appends it), for methods whose per-token weights must line
    up with how the response was cut into pieces (OPA-DPO tokenises sentence by sentence); when it is
    None the loop tokenises ``response(record)`` as the LLaVA template does. ``prompt`` (optional) builds
    the prompt ids itself, ``(record, preprocessor) -> ids`` including the expanded image tokens, for methods
    whose reference run used another prompt layout (OPA-DPO's DPO stage); None: the vicuna_v1 prompt.
    """

    name: str
    response: Callable[[PreferenceRecord], str]
    image: ImageVariant = CLEAN
    with_reference: bool = True
    tokens: Callable[[PreferenceRecord, Any], list[int]] | None = None
    prompt: Callable[[PreferenceRecord, Any], list[int]] | None = None


@dataclass
class LogProbs:
    """Per-token log-probs of one sequence for a batch: ``[B, T]`` padded, with a 0/1 ``mask``.

    ``tokens`` holds the target token ids (padding 0). ``.sum()`` gives LLaVA/TRL's sequence log-prob
    (sum over supervised tokens).
    """

    logps: torch.Tensor
    mask: torch.Tensor
    tokens: torch.Tensor

    def sum(self) -> torch.Tensor:
        return (self.logps * self.mask).sum(-1)


@dataclass
class StepInputs:
    """What a loss receives: policy and reference log-probs per sequence name, the records,
    per-sample tensors derived from them, and a hook for extra forwards (POVID).

    ``extra`` (set by the loop): ``model``, ``pre`` (preprocessor), ``cfg`` (the stage's TrainConfig),
    ``seed``, ``epoch``, ``device``, ``pad_id``, ``encoded`` (the policy batch) and ``raw`` (the policy
    forward, :class:`bench.train.loop.RawForward`: per-row log-probs/targets/arg-max and ``rescore(name,
    targets)``, which scores other tokens at a sequence's supervised positions from the same hidden
    states, with gradient) and ``reference_mode`` (a context-manager factory: inside it the model *is*
    the reference, for extra reference forwards).
    """

    records: list[PreferenceRecord]
    policy: dict[str, LogProbs]
    reference: dict[str, LogProbs]
    extra: dict[str, Any] = field(default_factory=dict)


LossFn = Callable[[StepInputs, Any], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


@dataclass
class Stage:
    """One training stage. ``kind`` is ``preference`` (needs a reference) or ``sft`` (cross-entropy
    on the sequences; no reference). ``config_key`` names the TrainConfig field of the method config
    used for this stage."""

    name: str
    sequences: list[Sequence]
    loss: LossFn
    kind: str = "preference"
    config_key: str = "train"
    # Optional: expand one record into several SFT examples (OPA: gt and revision).
    expand: Callable[[PreferenceRecord], list[PreferenceRecord]] | None = None
    # Optional hook run after the standard forwards (POVID's arg-max-under-noise sequence).
    extra_forward: Callable[[Any, StepInputs, Any], None] | None = None


class Method:
    """Base class of a registered training method."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    config_cls: ClassVar[type] = object
    # the data-construction pipeline (bench.data.pipelines) whose released format this method trains on when
    # the model entry can build data itself (see bench.data.method_data); None: no pipeline
    data_pipeline: ClassVar[str | None] = None

    def default_config(self) -> Any:
        return self.config_cls()

    def stages(self, cfg: Any) -> list[Stage]:
        raise NotImplementedError

    def prepare_records(self, records: list[PreferenceRecord]) -> list[PreferenceRecord]:
        """Complete method-specific fields before training (default: unchanged)."""
        return records

    def load_records(self, path: Path, cfg: Any, image_root: Path | None = None) -> list[PreferenceRecord]:
        """Read a released data format (HA-DPO, POVID, HSA-DPO, OPA-DPO; recognised from the path) or our
        JSONL of PreferenceRecord into records (:func:`bench.data.formats.load_any`); the loop then
        applies :meth:`prepare_records`. ``cfg.data_seed`` (default 42) seeds formats that sample (HA-DPO)."""
        from bench.data.formats import load_any

        return load_any(path, image_root=image_root, seed=getattr(cfg, "data_seed", 42))

    def default_data(self, data_root: Path) -> Path:
        """The bundled synthetic data set this method trains on when no --data is given: the method's
        own file ``preference/<name>.jsonl`` if the data pipelines made one, else the shared pairs."""
        own = data_root / "preference" / f"{self.name}.jsonl"
        return own if own.exists() else data_root / "preference" / "pairs.jsonl"
