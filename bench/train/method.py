"""What a training method declares, and what the loop hands back to it.

A method is a registry entry (``@METHODS.register`` on a :class:`Method` subclass that declares ``name``) with a
config dataclass and a list of
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

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, ContextManager

import torch

from bench.data.formats import load_any
from bench.data.preference import PreferenceRecord
from bench.errors import BenchError
from bench.train.config import TrainConfig

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


@dataclass(frozen=True)
class ForwardContext:
    """How the loop runs a forward in the current step: what :func:`bench.train.loop.run_sequences` needs
    besides the model, the records and the sequences. ``pre`` is the model family's preprocessor, ``cfg``
    the stage's :class:`TrainConfig`, ``seed``/``epoch`` seed the per-sample image variants, ``pad_id``
    pads the batch."""

    pre: Any
    cfg: TrainConfig
    seed: int
    epoch: int
    device: str
    pad_id: int


@dataclass
class StepContext:
    """What a stage's ``extra_forward`` hook (and a loss) can use besides the log-probs, set by the loop.

    ``model`` the policy (a PeftModel); ``forward`` how this step's forwards ran (pass it to
    :func:`bench.train.loop.run_sequences` for more); ``encoded`` the policy batch
    (:class:`bench.train.loop.Encoded`); ``raw`` the policy forward (:class:`bench.train.loop.RawForward`:
    per-row log-probs/targets/arg-max and ``rescore(name, targets)``, which scores other tokens at a
    sequence's supervised positions from the same hidden states, with gradient); ``reference_mode`` a
    context-manager factory: inside it the model *is* the reference, for extra reference forwards."""

    model: torch.nn.Module
    forward: ForwardContext
    encoded: Any
    raw: Any
    reference_mode: Callable[[], ContextManager[Any]]

    @property
    def pre(self) -> Any:
        """The preprocessor (``forward.pre``)."""
        return self.forward.pre


@dataclass
class StepInputs:
    """What a loss receives: policy and reference log-probs per sequence name, the records, and the step's
    :class:`StepContext` (None outside the loop, e.g. when a test calls a loss on hand-made log-probs)."""

    records: list[PreferenceRecord]
    policy: dict[str, LogProbs]
    reference: dict[str, LogProbs]
    context: StepContext | None = None

    def require_context(self, who: str) -> StepContext:
        """The step context, or a clear error naming ``who`` needed it."""
        if self.context is None:
            raise BenchError(f"{who}: needs the training loop's step context (StepInputs.context is None)")
        return self.context


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
    # Optional hook run after the standard forwards, before the loss (POVID's arg-max-under-noise sequence):
    # ``extra_forward(inputs, method_cfg)`` adds entries to ``inputs.policy``/``inputs.reference``, using
    # ``inputs.context`` (:class:`StepContext`) to run more forwards.
    extra_forward: Callable[[StepInputs, Any], None] | None = None


class Method(abc.ABC):
    """Base class of a registered training method (``@METHODS.register`` on the subclass).

    Declaration (class attributes, each with its default):
      ``name`` the registry key (``bench train --method NAME``), declared once — required;
      ``version`` ("1") enters run records; ``description`` ("": ``bench list`` shows the docstring's first
      line); ``config_cls`` the config dataclass with the paper's defaults — its :class:`TrainConfig` fields
      are the stages' loop settings (``Stage.config_key``); ``data_pipeline`` (None) the data-construction
      pipeline (:mod:`bench.data.pipelines`, keyed by its ``name``) that builds this method's training data
      when the model entry can (:mod:`bench.data.method_data`) — the pipeline declares its output file and
      whether its rollouts are sampled; None: the bundled data (:meth:`default_data`) or ``--data``.

    Required: :meth:`stages`. Optional hooks with defaults: :meth:`default_config`, :meth:`load_records`,
    :meth:`prepare_records`, :meth:`default_data`.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    config_cls: ClassVar[type] = object
    data_pipeline: ClassVar[str | None] = None

    def default_config(self) -> Any:
        """A fresh config with the paper's defaults (default: ``config_cls()``)."""
        return self.config_cls()

    @abc.abstractmethod
    def stages(self, cfg: Any) -> list[Stage]:
        """The stages to train, in order, for the method config ``cfg``."""

    def prepare_records(self, records: list[PreferenceRecord]) -> list[PreferenceRecord]:
        """Complete method-specific fields before training (default: unchanged)."""
        return records

    def load_records(self, path: Path, cfg: Any, image_root: Path | None = None) -> list[PreferenceRecord]:
        """Read a released data format (HA-DPO, POVID, HSA-DPO, OPA-DPO; recognised from the path) or our
        JSONL of PreferenceRecord into records (:func:`bench.data.formats.load_any`); the loop then
        applies :meth:`prepare_records`. ``cfg.data_seed`` (default 42) seeds formats that sample (HA-DPO)."""
        return load_any(path, image_root=image_root, seed=getattr(cfg, "data_seed", 42))

    def default_data(self, data_root: Path) -> Path:
        """The bundled synthetic data set this method trains on when no --data is given: the method's
        own file ``preference/<name>.jsonl`` if the data pipelines made one, else the shared pairs."""
        own = data_root / "preference" / f"{self.name}.jsonl"
        return own if own.exists() else data_root / "preference" / "pairs.jsonl"
