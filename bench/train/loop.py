"""The one shared training loop (accelerate + peft), used by every method.

Per stage: load the starting model (base + merged adapters of earlier stages), add a fresh LoRA,
compute the reference log-probs once (cached on disk as safetensors; epochs 2+ and reruns skip the
reference forward), then optimise the stage's loss. Checkpoints hold the adapter, optimizer,
scheduler, RNG state and step, every ``save_every`` steps and at the end; ``resume=True`` continues
from the last one and reproduces the uninterrupted loss trajectory (data order and image
transforms are functions of (seed, epoch, step, sample id), not of process history).

Before the first step every record is checked (image present, no empty response, no sequence over
``max_length``, unique ids). The reference is :class:`ReferenceMode` (adapters disabled, plus the
projector's starting weights when it trains — or, with ``reference_projector="policy"``, the policy's current
projector, computed online at every step); the cache and resume state are keyed by
:func:`stage_fingerprint` (data, method config, sequences, seed, earlier stages' weights). A non-finite
loss or gradient norm stops the run naming the step and samples; the last periodic checkpoint stays.

On disk, per stage ``OUT/checkpoint/<stage>/``: ``adapter/`` (peft, safetensors),
``projector.safetensors`` (if trained), ``ref_logps.safetensors``, ``state.pt`` (resume),
``log.jsonl`` (one line per optimizer step), ``DONE``. ``OUT/checkpoint/stages.json`` lists the
finished stages in order; :func:`bench.models.loading.apply_checkpoint` rebuilds the model from it.

Under ``accelerate launch`` (several processes) the policy model, optimizer and scheduler are prepared by
accelerate (DDP), every process trains on its own shard of each global micro-batch (see
:mod:`bench.train.distributed`), logged metrics are means over processes and only the main process writes
files; the checkpoint keeps every process's RNG state. The policy forward is a call of the prepared module
(:class:`PolicyForward`), so that DDP synchronises the gradients.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors.torch import load_file, save_file

from bench.config import to_dict
from bench.data.preference import PreferenceRecord
from bench.errors import BenchError, DataError
from bench.fingerprint import folder_fingerprint
from bench.io import append_jsonl, atomic_write_json, read_json
from bench.models.families.llava import vision_layers_used
from bench.models.family import ImageInput, family_of, prompt_image_input
from bench.models.llava import IGNORE_INDEX, LlavaPreprocessor, load_image
from bench.models.loading import apply_checkpoint
from bench.train import distributed as dist
from bench.train.config import CLIP_LINEARS, PROJECTOR_LINEARS, TrainConfig
from bench.train.forward import EncodedBatch, llava_of, pad_batch, sequence_logps, supervised_logps
from bench.train.method import ForwardContext, LogProbs, Method, Sequence, Stage, StepContext, StepInputs
from bench.train.shared_prefix import PackedRows, packed_sequence_logps, plan_for
from bench.train.trackers import check_trackers, parse_log_with


def _seed_for(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little") & (2**63 - 1)


def disable_dropout(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def add_lora(model: torch.nn.Module, cfg: TrainConfig) -> torch.nn.Module:
    """Fresh LoRA on the language model's linears (vision tower and projector excluded by regex unless
    ``cfg.lora_vision``, which adds every linear layer of both)."""
    from peft import LoraConfig, get_peft_model

    targets = "|".join(cfg.lora_targets)
    pattern = rf".*language_model.*\.({targets})$"
    if cfg.lora_vision:
        if cfg.train_projector:
            raise BenchError("lora_vision and train_projector cannot be combined (the projector would be both"
                             " wrapped by LoRA and trained in full)")
        pattern += "|" + family_of(model).vision_lora_pattern(llava_of(model).config, CLIP_LINEARS, PROJECTOR_LINEARS)
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
        target_modules=pattern,
    )
    return get_peft_model(model, lora)


def _vision_layers_used(config: Any) -> int:
    """How many vision encoder layers feed the projector (``vision_feature_layer`` −2 of 24 → 23): LoRA on
    the layers after it would never receive a gradient (the seed puts it there anyway; it stays zero)."""
    return vision_layers_used(config)


def set_trainable(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """Vision tower frozen, projector per ``train_projector``; their LoRA weights train iff ``lora_vision``."""
    family = family_of(model)
    for n, p in family.vision_tower(model).named_parameters():
        p.requires_grad_(cfg.lora_vision and "lora_" in n)
    for n, p in family.projector(model).named_parameters():
        p.requires_grad_(cfg.train_projector or (cfg.lora_vision and "lora_" in n))
    if cfg.full_finetune:
        for p in family.language_model(model).parameters():
            p.requires_grad_(True)


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """transformers' activation checkpointing of every decoder/encoder layer, non-reentrant (works with
    frozen inputs, DDP and ``no_sync``), plus a hook making the input embeddings require grad (peft: the
    embeddings are frozen, and a checkpointed segment whose inputs need no grad would be cut from the graph)."""
    llava = llava_of(model)
    kwargs = {"use_reentrant": False}
    if hasattr(llava, "activation_checkpointing_enable"):
        llava.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers < 5
        llava.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if getattr(llava, "_require_grads_hook", None) is None:
        llava.enable_input_require_grads()


class PolicyForward(torch.nn.Module):
    """The module accelerate prepares: ``forward(fn, *args)`` runs ``fn(model, *args)``. The loop's forward
    (:func:`run_sequences`) calls the LLaVA sub-modules directly; routing it through this module's
    ``forward`` lets a DistributedDataParallel wrapper prepare for backward and all-reduce the gradients."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn, *args, **kwargs):
        return fn(self.model, *args, **kwargs)


def _to_tensor(img) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.asarray(img, dtype="float32") / 255.0).permute(2, 0, 1).contiguous()


def _to_pil(t: torch.Tensor):
    from PIL import Image

    arr = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype("uint8")
    return Image.fromarray(arr)


def image_input_for(pre: Any, rec: PreferenceRecord, seq: Sequence, seed: int, epoch: int) -> ImageInput:
    """The preprocessed image variant of (record, sequence): raw-space transforms act on the RGB image before
    the family's preprocessing, pixel-space ones on the normalised pixel tensor [3, H, W] (on each any-res tile
    of LLaVA-NeXT in turn, one generator)."""
    variant = seq.image
    img = load_image(rec.image, item=rec.id)
    gen = torch.Generator().manual_seed(_seed_for(seed, rec.id, variant.name, 0 if variant.fixed else epoch))
    if variant.transform is not None and variant.space == "raw":
        img = _to_pil(variant.transform(_to_tensor(img), gen))
    inp = prompt_image_input(pre, img, rec.question)
    if variant.transform is not None and variant.space == "pixel":
        pv = inp.pixels
        if pv.dim() == 3:
            pv = variant.transform(pv, gen)
        elif pv.dim() == 4:
            pv = torch.stack([variant.transform(tile, gen) for tile in pv])
        else:
            raise BenchError(f"image variant {variant.name!r} transforms pixel tensors [3, H, W]; this model family's"
                             f" pixel input has shape {tuple(pv.shape)}")
        inp = ImageInput(pv, inp.extra)
    return inp


def pixel_values_for(pre: Any, rec: PreferenceRecord, seq: Sequence, seed: int, epoch: int) -> torch.Tensor:
    """The pixel tensor of :func:`image_input_for`."""
    return image_input_for(pre, rec, seq, seed, epoch).pixels


def image_size_of(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file from its header (no decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except Exception as exc:  # PIL raises many types
        raise DataError(path, f"unreadable image ({exc})") from None


@dataclasses.dataclass
class Encoded:
    seqs: list[dict]
    image_index: list[int]
    pixels: torch.Tensor
    keys: list[tuple[int, str]]  # (record position, sequence name) per row
    image_extra: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)  # image_sizes, image_grid_thw


def encode_sequence(pre: LlavaPreprocessor, rec: PreferenceRecord, seq: Sequence, max_length: int) -> dict:
    """input_ids/labels of one (record, sequence): the LLaVA template around ``seq.response(rec)``, or around
    the method's own response ids (``seq.tokens``) followed by ``</s>``, after the method's own prompt ids
    (``seq.prompt``) when it has them. Empty responses and sequences longer than ``max_length`` raise, naming
    the sample and the sequence."""
    where = f"sample {rec.id} ({seq.name})"
    response = seq.response(rec)
    if not isinstance(response, str) or not response.strip():
        raise BenchError(f"sample {rec.id}: empty response for sequence {seq.name!r}")
    size = image_size_of(rec.image)
    if seq.tokens is None and seq.prompt is None:
        return pre.encode_pair(rec.question, response, max_length, where=where, image_size=size)
    ids = list(seq.tokens(rec, pre)) if seq.tokens is not None else pre.response_ids(response)[: -len(pre.end_ids)]
    if not ids:
        raise BenchError(f"sample {rec.id}: empty response for sequence {seq.name!r}")
    prompt = list(seq.prompt(rec, pre)) if seq.prompt is not None else pre.prompt_ids(rec.question, size)
    r = ids + list(pre.end_ids)
    if len(prompt) + len(r) > max_length:
        raise BenchError(
            f"{where}: sequence of {len(prompt) + len(r)} tokens (of which {prompt.count(pre.image_token_id)} image tokens)"
            f" exceeds max_length {max_length}; raise max_length or shorten the response — refusing to truncate")
    return {"input_ids": prompt + r, "labels": [IGNORE_INDEX] * len(prompt) + r, "prompt_len": len(prompt)}


def check_inputs(pre: LlavaPreprocessor, records: list[PreferenceRecord], sequences: list[Sequence],
                 cfg: TrainConfig) -> None:
    """Fail before training, not hours into it: every image exists, no response is empty and no sequence
    exceeds ``max_length`` (tokenisation only, no image decoding); ids are unique (they key the reference
    cache and the per-sample image transforms)."""
    seen: set[str] = set()
    for rec in records:
        if rec.id in seen:
            raise BenchError(f"duplicate sample id {rec.id!r}: ids key the reference cache and image transforms")
        seen.add(rec.id)
        if not Path(rec.image).exists():
            raise DataError(rec.image, f"image file not found (sample {rec.id})")
        for seq in sequences:
            encode_sequence(pre, rec, seq, cfg.max_length)


def encode(pre: LlavaPreprocessor, records: list[PreferenceRecord], sequences: list[Sequence], cfg: TrainConfig,
           seed: int, epoch: int) -> Encoded:
    seqs, image_index, keys, pix, pix_key = [], [], [], [], {}
    for i, rec in enumerate(records):
        for seq in sequences:
            seqs.append(encode_sequence(pre, rec, seq, cfg.max_length))
            key = (i, seq.image.name)
            if key not in pix_key:
                pix_key[key] = len(pix)
                pix.append(image_input_for(pre, rec, seq, seed, epoch))
            image_index.append(pix_key[key])
            keys.append((i, seq.name))
    pixels, extra = pre.collate(pix)
    return Encoded(seqs, image_index, pixels, keys, extra)


def _gather(enc: Encoded, lp: list[torch.Tensor], tg: list[torch.Tensor], names: list[str], n: int,
            device) -> dict[str, LogProbs]:
    out = {}
    for name in names:
        rows = [r for r, (_, s) in enumerate(enc.keys) if s == name]
        length = max(1, max(lp[r].numel() for r in rows))
        logps = torch.zeros(n, length, device=device, dtype=torch.float32)
        mask = torch.zeros(n, length, device=device)
        toks = torch.zeros(n, length, device=device, dtype=torch.long)
        for r in rows:
            i = enc.keys[r][0]
            k = lp[r].numel()
            logps[i, :k] = lp[r]
            mask[i, :k] = 1
            toks[i, :k] = tg[r]
        out[name] = LogProbs(logps, mask, toks)
    return out


@dataclasses.dataclass
class RawForward:
    """One forward of :func:`run_sequences`, per encoded row (``enc.keys`` order): supervised log-probs,
    their target ids and the arg-max ids at those positions; ``hidden`` keeps the last hidden states
    (with their graph when the forward had one) so that :meth:`rescore` can score other tokens. ``packed``: the
    packed rows when the forward shared prompt prefixes (``hidden``/``batch`` are then the packed rows')."""

    logps: list[torch.Tensor]
    targets: list[torch.Tensor]
    argmax: list[torch.Tensor]
    enc: Encoded
    batch: EncodedBatch
    hidden: torch.Tensor
    llava: Any
    n_records: int
    packed: PackedRows | None = None

    def rows(self, name: str) -> list[int]:
        return [r for r, (_, s) in enumerate(self.enc.keys) if s == name]

    def argmax_of(self, name: str) -> list[torch.Tensor]:
        """Arg-max ids at the supervised positions of sequence ``name``, one 1-D tensor per record."""
        return [self.argmax[r] for r in self.rows(name)]

    def rescore(self, name: str, targets: list[torch.Tensor]) -> LogProbs:
        """Log-probs of ``targets`` (one id per supervised position of sequence ``name``, per record)
        under this forward's context, i.e. lm_head on the kept hidden states (no new forward)."""
        rows = self.rows(name)
        alt = [t.to(self.hidden.device) for t in targets]
        if self.packed is not None:
            lp, tg, _ = self.packed.logps(self.llava, self.hidden, rows, alt_targets=alt)
        else:
            idx = torch.tensor(rows, device=self.hidden.device)
            lp, tg, _ = supervised_logps(self.llava, self.hidden[idx], self.batch.labels[idx], alt_targets=alt)
        sub = Encoded([], [], self.enc.pixels, [self.enc.keys[r] for r in rows], self.enc.image_extra)
        return _gather(sub, lp, tg, [name], self.n_records, self.hidden.device)[name]


def run_sequences(model: torch.nn.Module, records: list[PreferenceRecord], sequences: list[Sequence], *,
                  forward: ForwardContext, alt_targets: list[torch.Tensor] | None = None
                  ) -> tuple[dict[str, LogProbs], Encoded, RawForward]:
    """Per-token log-probs of ``sequences`` for ``records`` (one forward, run as ``forward`` says: preprocessor,
    stage config, seed and epoch of the image variants, device, pad id); ``alt_targets`` as in forward.py.
    With ``cfg.share_prefix`` a record's sequences on the same image and prompt share one packed row
    (:mod:`bench.train.shared_prefix`; the padded rows otherwise).

    Returns ({name: LogProbs}, Encoded, RawForward)."""
    enc = encode(forward.pre, records, sequences, forward.cfg, forward.seed, forward.epoch)
    device = forward.device
    extra = {k: v.to(device) for k, v in enc.image_extra.items()}
    packed = plan_for(model, enc.seqs, enc.image_index, forward.pad_id) if forward.cfg.share_prefix else None
    if packed is not None:
        packed = packed.to(device)
        batch = packed.batch
        lp, tg, am, hidden = packed_sequence_logps(model, packed, enc.pixels.to(device), alt_targets, extra)
    else:
        batch = pad_batch(enc.seqs, forward.pad_id, enc.image_index)
        batch = dataclasses.replace(batch, **{f.name: getattr(batch, f.name).to(device)
                                              for f in dataclasses.fields(batch)})
        lp, tg, am, hidden = sequence_logps(model, batch, enc.pixels.to(device), alt_targets=alt_targets,
                                            return_hidden=True, image_extra=extra)
    if alt_targets is not None:
        tg = list(alt_targets)
    names = [s.name for s in sequences]
    raw = RawForward(lp, tg, am, enc, batch, hidden, llava_of(model), len(records), packed)
    return _gather(enc, lp, tg, names, len(records), device), enc, raw


class ReferenceCache:
    """Reference per-token log-probs per (sample id, sequence name), stored as safetensors."""

    def __init__(self, path: Path, fingerprint: str):
        self.path, self.fingerprint = path, fingerprint
        self.data: dict[str, torch.Tensor] = {}
        meta = path.with_suffix(".json")
        if path.exists() and meta.exists() and read_json(meta).get("fingerprint") == fingerprint:
            self.data = load_file(str(path))

    @staticmethod
    def key(rec_id: str, seq: str) -> str:
        return f"{rec_id}\x1f{seq}"

    def get(self, rec_id: str, seq: str) -> torch.Tensor | None:
        return self.data.get(self.key(rec_id, seq))

    def put(self, rec_id: str, seq: str, value: torch.Tensor) -> None:
        self.data[self.key(rec_id, seq)] = value.detach().float().cpu().contiguous()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        save_file(self.data, str(tmp))
        tmp.replace(self.path)
        atomic_write_json(self.path.with_suffix(".json"), {"fingerprint": self.fingerprint, "entries": len(self.data)})


def _stack_cached(cache: ReferenceCache, records, seq_names, device) -> dict[str, LogProbs]:
    out = {}
    for name in seq_names:
        vals = [cache.get(r.id, name) for r in records]
        length = max(1, max(v.numel() for v in vals))
        logps = torch.zeros(len(records), length, device=device)
        mask = torch.zeros(len(records), length, device=device)
        for i, v in enumerate(vals):
            logps[i, : v.numel()] = v.to(device)
            mask[i, : v.numel()] = 1
        out[name] = LogProbs(logps, mask, torch.zeros_like(logps, dtype=torch.long))
    return out


def _reference(model: torch.nn.Module, records: list[PreferenceRecord], sequences: list[Sequence],
               forward: ForwardContext, cache: ReferenceCache | None, ref_mode=None) -> dict[str, LogProbs]:
    """Reference log-probs of the ``with_reference`` sequences: fixed image variants from ``cache`` (computed
    and stored when missing), the others online, inside ``ref_mode()`` (default: adapters off)."""
    ref_seqs = [s for s in sequences if s.with_reference]
    cacheable = [s for s in ref_seqs if s.image.fixed] if cache is not None else []
    online = [s for s in ref_seqs if s not in cacheable]
    out: dict[str, LogProbs] = {}
    missing = [s for s in cacheable if any(cache.get(r.id, s.name) is None for r in records)]
    todo = online + missing
    if todo:
        with torch.no_grad(), (ref_mode() if ref_mode is not None else _adapters_off(model)):
            lps, enc, raw = run_sequences(model, records, todo, forward=forward)
        out.update(lps)
        for row, (i, name) in enumerate(enc.keys):
            if any(s.name == name for s in missing):
                cache.put(records[i].id, name, raw.logps[row])
    if cacheable:
        out.update(_stack_cached(cache, records, [s.name for s in cacheable], device=forward.device))
    return out


class _adapters_off:
    def __init__(self, model):
        self.model = model
        self.ctx = model.disable_adapter() if hasattr(model, "disable_adapter") else None

    def __enter__(self):
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc):
        if self.ctx is not None:
            return self.ctx.__exit__(*exc)
        return False


adapters_off = _adapters_off


class ReferenceMode:
    """Context in which ``model`` *is* the reference, the stage's starting model: adapters disabled and,
    when the projector is trained in place (``train_projector``), a frozen copy of its starting weights
    swapped in — otherwise online reference forwards (uncached image variants, POVID's noise) would see the
    trained projector. Without ``frozen_projector`` the reference uses the projector as it is now (what
    ``TrainConfig.reference_projector="policy"`` asks for)."""

    def __init__(self, model, frozen_projector: torch.nn.Module | None = None):
        self.model, self.frozen = model, frozen_projector
        self.adapters = _adapters_off(model)
        self.saved = None

    def __enter__(self):
        self.adapters.__enter__()
        if self.frozen is not None:
            family = family_of(self.model)
            self.saved = family.projector(self.model)
            family.set_projector(self.model, self.frozen)
        return self.model

    def __exit__(self, *exc):
        if self.saved is not None:
            family_of(self.model).set_projector(self.model, self.saved)
            self.saved = None
        return self.adapters.__exit__(*exc)


def _micro_batches(n: int, cfg: TrainConfig, seed: int, rank: int = 0, world: int = 1):
    """Infinite deterministic stream of (epoch, index list) micro-batches of process ``rank`` of ``world``:
    the seeded per-epoch permutation (padded to a multiple of ``world``), cut into global micro-batches of
    ``batch_size × world``, of which this process takes its shard."""
    epoch, step = 0, cfg.batch_size * world
    while True:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(_seed_for(seed, "order", epoch))).tolist()
        perm = dist.pad_to_multiple(perm, world)
        for start in range(0, len(perm), step):
            chunk = dist.shard(perm[start : start + step], rank, world)
            if chunk:
                yield epoch, chunk
        epoch += 1


def total_steps(n: int, cfg: TrainConfig, world: int = 1) -> int:
    """Optimizer steps of the run (``max_steps`` or ``epochs`` over ``n`` records on ``world`` processes)."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    per_epoch = math.ceil(dist.micro_batches_per_epoch(n, cfg.batch_size, world) / cfg.grad_accum)
    return max(1, per_epoch * cfg.epochs)


def _rng_state(accelerator: Any) -> dict:
    """The main process's RNG state (``torch``) and every process's (``per_process``, rank order)."""
    states = dist.gather_rng_states(accelerator)
    return {"torch": states[0], "per_process": states}


def stage_fingerprint(records: list[PreferenceRecord], mcfg: Any, stage: Stage, seed: int, start: str = "") -> str:
    """Identity of a stage's run: data, the whole method config (not only the stage's TrainConfig: method
    parameters such as a mask ratio change the reference sequences), the sequences and image variants, the
    seed and the starting model (hash of the earlier stages' weights). Guards the reference cache and resume."""
    seqs = [[s.name, s.image.name, s.image.space, s.image.fixed, s.with_reference] for s in stage.sequences]
    own = {k: _without_tracking(v) for k, v in to_dict(mcfg).items()  # other stages' loop settings do not matter
           if not isinstance(getattr(mcfg, k, None), TrainConfig) or k == stage.config_key}
    blob = json.dumps([[r.to_json() for r in records], own, stage.name, stage.kind, seqs, seed, start],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Settings added after checkpoints existed, left out of identities and fingerprints at their default value so
# that the checkpoints and reference caches of runs without them stay valid (set, they are recorded).
_OMITTED_AT_DEFAULT = {"share_prefix": False}


def _without_tracking(value: Any) -> Any:
    """A TrainConfig dict without the settings that only observe the run (trackers), and without the settings of
    ``_OMITTED_AT_DEFAULT`` when they hold their default."""
    if not isinstance(value, dict):
        return value
    return {k: v for k, v in value.items()
            if k != "log_with" and not (k in _OMITTED_AT_DEFAULT and v == _OMITTED_AT_DEFAULT[k])}


def make_accelerator(cfg: TrainConfig, device: str, stage_dir: Path):
    """The stage's Accelerator: CPU or the process's GPU, bf16 autocast on CUDA when ``cfg.bf16``, and the
    trackers of ``cfg.log_with`` (checked to be installed) writing under ``stage_dir/trackers``."""
    from accelerate import Accelerator

    trackers = check_trackers(parse_log_with(cfg.log_with))
    use_bf16 = cfg.bf16 and device.startswith("cuda")
    # step_scheduler_with_optimizer=False: the schedule already counts optimizer steps of the global batch;
    # accelerate's default would step it once per process per optimizer step.
    return Accelerator(cpu=device == "cpu", mixed_precision="bf16" if use_bf16 else "no",
                       step_scheduler_with_optimizer=False, log_with=trackers or None,
                       project_dir=str(stage_dir / "trackers") if trackers else None)


def _grad_norm(value: Any) -> float | None:
    """Clipped-gradient norm as a float (None when the backend, e.g. DeepSpeed, clips itself and returns none)."""
    return None if value is None else float(value)


def _peak_memory(device: str) -> dict[str, float]:
    """Peak memory of this process: CUDA allocator peak on GPU, else the process's peak resident set."""
    if device.startswith("cuda"):
        return {"peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3)}
    import resource

    return {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


# ------------------------------------------------------------------------------------ one stage, recipe-style
# train_stage reads like a torchtune recipe: setup_stage → restore_or_start → precompute_reference →
# train_step (× steps, with log_step and save_checkpoint) → finish_stage. The global torch RNG is consumed
# only by forwards (dropout), in the same order as before the split: reference pre-compute in eval mode,
# then per micro-batch the policy forward, the reference forward, the extra forwards.

@dataclasses.dataclass
class StageRun:
    """One stage's training state: built by :func:`setup_stage`, read by the step and checkpoint functions."""

    method: Method
    stage: Stage
    mcfg: Any
    cfg: TrainConfig
    model: torch.nn.Module
    pre: Any
    records: list[PreferenceRecord]
    stage_dir: Path
    seed: int
    device: str
    accelerator: Any
    policy_forward: torch.nn.Module  # PolicyForward, prepared by accelerate
    params: list[torch.nn.Parameter]
    opt: Any
    sched: Any
    steps: int
    pad_id: int
    fingerprint: str
    cache: ReferenceCache | None
    ref_mode: Callable[[], ReferenceMode]

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def state_path(self) -> Path:
        return self.stage_dir / "state.pt"

    @property
    def log_path(self) -> Path:
        return self.stage_dir / "log.jsonl"

    def forward_context(self, epoch: int) -> ForwardContext:
        return ForwardContext(pre=self.pre, cfg=self.cfg, seed=self.seed, epoch=epoch, device=self.device,
                              pad_id=self.pad_id)


def prepare_model(model: torch.nn.Module, cfg: TrainConfig, stage: Stage) -> tuple[Callable[[], ReferenceMode], bool]:
    """Dropout, trainable parameters, gradient checkpointing; returns (the reference-mode factory, whether the
    reference moves with the trained projector — ``reference_projector="policy"``: no frozen copy, no cache)."""
    if cfg.disable_dropout:
        disable_dropout(model)
    set_trainable(model, cfg)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    _check_loop_options(cfg)
    moving_reference = cfg.train_projector and cfg.reference_projector == "policy"
    frozen_projector = None
    if cfg.train_projector and stage.kind == "preference" and not moving_reference:
        frozen_projector = copy.deepcopy(family_of(model).projector(model)).requires_grad_(False)
    return (lambda: ReferenceMode(model, frozen_projector)), moving_reference


def setup_stage(method: Method, stage: Stage, mcfg: Any, model: torch.nn.Module, pre: Any,
                records: list[PreferenceRecord], stage_dir: Path, seed: int, device: str,
                start_fingerprint: str = "") -> StageRun:
    """Setup: the stage's records (``Stage.expand``) checked before any step, the accelerator, the model
    (:func:`prepare_model`), AdamW and the cosine schedule (in ``scheduler_step_every`` units) prepared by
    accelerate, the stage fingerprint and the reference cache."""
    from transformers import get_cosine_schedule_with_warmup

    cfg: TrainConfig = getattr(mcfg, stage.config_key)
    if stage.expand is not None:
        records = [r2 for r in records for r2 in stage.expand(r)]
    check_inputs(pre, records, stage.sequences, cfg)
    accelerator = make_accelerator(cfg, device, stage_dir)
    if accelerator.is_main_process:
        stage_dir.mkdir(parents=True, exist_ok=True)
    ref_mode, moving_reference = prepare_model(model, cfg, stage)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise BenchError(f"stage {stage.name}: no trainable parameters")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = total_steps(len(records), cfg, accelerator.num_processes)
    sched_steps = math.ceil(steps / cfg.scheduler_step_every)  # the schedule's own unit (scheduler_step_every)
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else math.ceil(cfg.warmup_ratio * sched_steps)
    sched = get_cosine_schedule_with_warmup(opt, warmup, sched_steps)
    policy_forward, opt, sched = accelerator.prepare(PolicyForward(model), opt, sched)
    pad_id = pre.tokenizer.pad_token_id if pre.tokenizer.pad_token_id is not None else 0
    fp = stage_fingerprint(records, mcfg, stage, seed, start_fingerprint)
    cache = (ReferenceCache(stage_dir / "ref_logps.safetensors", fp)
             if (cfg.cache_reference and stage.kind == "preference" and not moving_reference) else None)
    return StageRun(method, stage, mcfg, cfg, model, pre, records, stage_dir, seed, device, accelerator,
                    policy_forward, params, opt, sched, steps, pad_id, fp, cache, ref_mode)


def restore_or_start(run: StageRun, resume: bool) -> int:
    """Checkpoint, read side: with ``resume`` and a saved state of this stage's fingerprint, restore the
    trainable weights, optimizer, scheduler and every process's RNG and return its step; otherwise start at
    step 0 with an empty log."""
    if resume and run.state_path.exists():
        state = torch.load(run.state_path, weights_only=False)
        if state.get("fingerprint") != run.fingerprint:
            raise BenchError(f"{run.state_path}: checkpoint belongs to other data/config; remove it or drop --resume")
        run.model.load_state_dict(state["trainable"], strict=False)
        run.opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["scheduler"])
        dist.restore_rng_state(state["rng"], run.rank, run.world)
        if run.main:
            _truncate_log(run.log_path, state["step"])
        return state["step"]
    if run.main and run.log_path.exists():
        run.log_path.unlink()
    return 0


def precompute_reference(run: StageRun) -> None:
    """Reference pre-compute: the cached reference log-probs of every record's fixed image variants, once for
    the whole data set (epochs 2+ and reruns read them from ``ref_logps.safetensors``)."""
    if run.cache is None or run.stage.kind != "preference":
        return
    fixed = [s for s in run.stage.sequences if s.with_reference and s.image.fixed]
    todo = [r for r in run.records if any(run.cache.get(r.id, s.name) is None for s in fixed)]
    for i in range(0, len(todo), run.cfg.batch_size):
        _reference(run.model, todo[i : i + run.cfg.batch_size], fixed, run.forward_context(0), run.cache,
                   run.ref_mode)
    if todo and run.main:
        run.cache.save()


def micro_step(run: StageRun, step: int, batch: list[PreferenceRecord], epoch: int,
               sync: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One micro-batch: policy forward, reference, the stage's extra forwards, loss, backward (gradients
    all-reduced only when ``sync``). Returns (loss, metrics)."""
    acc, stage = run.accelerator, run.stage
    with (contextlib.nullcontext() if sync else acc.no_sync(run.policy_forward)), acc.autocast():
        fwd = run.forward_context(epoch)
        policy, enc, raw = run.policy_forward(run_sequences, batch, stage.sequences, forward=fwd)
        reference = (_reference(run.model, batch, stage.sequences, fwd, run.cache, run.ref_mode)
                     if stage.kind == "preference" else {})
        inputs = StepInputs(batch, policy, reference,
                            StepContext(model=run.model, forward=fwd, encoded=enc, raw=raw,
                                        reference_mode=run.ref_mode))
        if stage.extra_forward is not None:
            stage.extra_forward(inputs, run.mcfg)
        loss, metrics = stage.loss(inputs, run.mcfg)
        if dist.any_process(acc, not torch.isfinite(loss)):
            raise _non_finite_loss(run.method, stage, loss, step, batch, run.state_path)
        acc.backward(loss / run.cfg.grad_accum)
    return loss, metrics


def train_step(run: StageRun, step: int, stream: Iterator[tuple[int, list[int]]]) -> dict[str, Any]:
    """Step: ``grad_accum`` micro-batches from ``stream``, then clip, update and (every ``scheduler_step_every``
    updates) schedule. Returns the logged row: metrics averaged over micro-batches and processes."""
    cfg, t_step = run.cfg, time.perf_counter()
    agg: dict[str, float] = {}
    ids_seen: list[str] = []
    for micro in range(cfg.grad_accum):
        epoch, idx = next(stream)
        batch = [run.records[i] for i in idx]
        ids_seen += [r.id for r in batch]
        # DDP all-reduces the gradients on the last micro-batch only (never with sync_gradients=False)
        loss, metrics = micro_step(run, step, batch, epoch, sync=micro == cfg.grad_accum - 1 and cfg.sync_gradients)
        agg["loss"] = agg.get("loss", 0.0) + loss.item() / cfg.grad_accum
        for k, v in metrics.items():
            agg[k] = agg.get(k, 0.0) + float(v.detach().float().mean()) / cfg.grad_accum
    grad_norm = _grad_norm(run.accelerator.clip_grad_norm_(run.params, cfg.max_grad_norm))
    if grad_norm is not None and not math.isfinite(grad_norm):
        raise BenchError(f"{run.method.name}/{run.stage.name}: non-finite gradient norm at step {step + 1} on"
                         f" samples {ids_seen}; no update was applied; {_last_good(run.state_path)}")
    lr_used = run.sched.get_last_lr()[0]
    run.opt.step()
    if (step + 1) % cfg.scheduler_step_every == 0:
        run.sched.step()
    run.opt.zero_grad(set_to_none=True)
    agg = dist.mean_over_processes(run.accelerator, agg)
    n_pairs = cfg.batch_size * cfg.grad_accum * run.world
    dt = time.perf_counter() - t_step
    return {"step": step + 1, **{k: round(v, 6) for k, v in agg.items()}, "grad_norm": grad_norm,
            "lr": lr_used, "pairs_per_s": round(n_pairs / dt, 3), **_peak_memory(run.device)}


def log_step(run: StageRun, row: dict[str, Any], bar: Any = None) -> None:
    """The step's row to ``log.jsonl`` (main process), the trackers and the progress bar."""
    if run.main:
        append_jsonl(run.log_path, [row])
    if run.cfg.log_with:
        run.accelerator.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.4f}")


def save_checkpoint(run: StageRun, step: int) -> None:
    """Checkpoint, write side: the resume state after ``step`` optimizer steps (collective; main writes)."""
    _save_state(run.accelerator, run.model, run.opt, run.sched, step, run.fingerprint, run.state_path)


def finish_stage(run: StageRun) -> None:
    """The final checkpoint: resume state, adapter (and trained projector), ``DONE``; trackers closed; every
    process waits until the main process has written them (the next stage reads them)."""
    save_checkpoint(run, run.steps)
    if run.main:
        _save_adapter(run.model, run.cfg, run.stage_dir)
        (run.stage_dir / "DONE").write_text("ok\n")
    if run.cfg.log_with:
        run.accelerator.end_training()
    run.accelerator.wait_for_everyone()


def train_stage(
    method: Method, stage: Stage, mcfg: Any, model: torch.nn.Module, pre: LlavaPreprocessor,
    records: list[PreferenceRecord], stage_dir: Path, seed: int, resume: bool, device: str = "cpu",
    progress: bool = True, start_fingerprint: str = "",
) -> dict:
    """Train one stage in place on ``model`` (a fresh PeftModel); returns a summary dict (the last logged
    row, metrics averaged over processes)."""
    run = setup_stage(method, stage, mcfg, model, pre, records, stage_dir, seed, device, start_fingerprint)
    cfg = run.cfg
    start_step = restore_or_start(run, resume)
    if cfg.log_with:
        run.accelerator.init_trackers(f"bench-{method.name}-{stage.name}", config=_tracker_config(mcfg))
    precompute_reference(run)
    stream = _micro_batches(len(run.records), cfg, seed, run.rank, run.world)
    for _ in range(start_step * cfg.grad_accum):  # fast-forward the data position
        next(stream)
    run.policy_forward.train()
    bar = None
    if progress and run.main:
        from tqdm.auto import tqdm  # optional progress display, imported only when shown

        bar = tqdm(total=run.steps, initial=start_step, desc=f"{method.name}/{stage.name}", leave=False)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for step in range(start_step, run.steps):
        summary = train_step(run, step, stream)
        log_step(run, summary, bar)
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < run.steps:
            save_checkpoint(run, step + 1)
    if bar is not None:
        bar.close()
    finish_stage(run)
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    summary["steps"] = run.steps
    summary["records"] = len(run.records)
    summary["processes"] = run.world
    return summary


def _check_loop_options(cfg: TrainConfig) -> None:
    if cfg.reference_projector not in ("frozen", "policy"):
        raise BenchError(f"train.reference_projector must be 'frozen' or 'policy', not {cfg.reference_projector!r}")
    if cfg.scheduler_step_every < 1:
        raise BenchError(f"train.scheduler_step_every must be at least 1, not {cfg.scheduler_step_every}")


def _non_finite_loss(method: Method, stage: Stage, loss: torch.Tensor, step: int, batch: list[PreferenceRecord],
                     state_path: Path) -> BenchError:
    """The error every process raises when some process's loss is not finite (naming that process's samples)."""
    where = (f"non-finite loss {loss.item()} at step {step + 1} on samples {[r.id for r in batch]}"
             if not torch.isfinite(loss) else f"non-finite loss on another process at step {step + 1}")
    return BenchError(f"{method.name}/{stage.name}: {where}; {_last_good(state_path)}")


def _tracker_config(mcfg: Any) -> dict:
    """The method config flattened to ``a/b`` keys with scalar values (what tensorboard's hparams accept)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}/", v)
        else:
            flat[prefix.rstrip("/")] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk("", to_dict(mcfg))
    return flat


def _last_good(state_path: Path) -> str:
    if state_path.exists():
        step = torch.load(state_path, weights_only=False, map_location="cpu", mmap=True).get("step")
        return f"the last good checkpoint (step {step}) is kept in {state_path.parent} (resume with --resume)"
    return f"no checkpoint was saved before this step (set save_every to keep one) in {state_path.parent}"


def _truncate_log(path: Path, step: int) -> None:
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in lines))


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in names}


def _save_state(accelerator: Any, model, opt, sched, step: int, fp: str, path: Path) -> None:
    """Resume state (trainable weights, optimizer, scheduler, every process's RNG, step); collective with
    several processes, written by the main process only."""
    rng = _rng_state(accelerator)
    if not accelerator.is_main_process:
        return
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"trainable": _trainable_state(model), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng": rng, "step": step, "fingerprint": fp}, tmp)
    tmp.replace(path)


def _save_adapter(model, cfg: TrainConfig, stage_dir: Path) -> None:
    llava = llava_of(model)
    proj = family_of(model).projector_prefix
    if hasattr(model, "save_pretrained") and hasattr(model, "peft_config"):
        model.save_pretrained(str(stage_dir / "adapter"), safe_serialization=True)
    if cfg.train_projector or cfg.full_finetune:
        prefix = family_of(model).language_model_prefix if cfg.full_finetune else proj
        extra = {k: v.detach().cpu().contiguous() for k, v in llava.state_dict().items()
                 if k.startswith(proj) or (cfg.full_finetune and k.startswith(prefix))}
        save_file(extra, str(stage_dir / "non_lora_trainables.safetensors"))


def _weights_fingerprint(ckpt: Path, done: list[dict]) -> str:
    """Hash of the weights the earlier stages left (what the next stage starts from)."""
    files = sorted(f for st in done for f in (ckpt / st["dir"]).rglob("*.safetensors") if "ref_logps" not in f.name)
    return folder_fingerprint(ckpt, files)[:16]


IDENTITY_FILE = "identity.json"


def run_identity(method: Method, mcfg: Any, records: list[PreferenceRecord], seed: int) -> dict:
    """What a checkpoint folder was trained from: method, data (sha256 of the records), config, seed."""
    data = hashlib.sha256(json.dumps([r.to_json() for r in records], sort_keys=True, default=str).encode())
    config = {k: _without_tracking(v) for k, v in to_dict(mcfg).items()}
    return {"method": method.name, "data_sha256": data.hexdigest(), "records": len(records), "config": config,
            "seed": seed}


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def identity_changes(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two :func:`run_identity` dicts."""
    changes = []
    if old.get("method") != new.get("method"):
        changes.append(f"method {old.get('method')} → {new.get('method')}")
    if old.get("data_sha256") != new.get("data_sha256"):
        changes.append(f"training data ({old.get('records')} → {new.get('records')} records, other content)")
    if old.get("seed") != new.get("seed"):
        changes.append(f"seed {old.get('seed')} → {new.get('seed')}")
    a, b = _flat(old.get("config") or {}), _flat(new.get("config") or {})
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            changes.append(f"{key} {a.get(key)!r} → {b.get(key)!r}")
    return changes


def check_checkpoint_identity(out_dir: Path, identity: dict, force: bool = False) -> None:
    """Refuse to reuse or overwrite a checkpoint folder trained from other data/config (naming what changed),
    unless ``force`` — then the old checkpoint is removed and training starts afresh."""
    ckpt = Path(out_dir) / "checkpoint"
    path = ckpt / IDENTITY_FILE
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    changes = identity_changes(old, identity)
    if not changes:
        return
    if force:
        import shutil

        shutil.rmtree(ckpt)
        return
    shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
    raise BenchError(f"{ckpt}: holds a run of other data/config ({shown}); use another --out, or --force to"
                     " discard it and retrain")


def train(method: Method, mcfg: Any, base_loader, records: list[PreferenceRecord], out_dir: Path, seed: int,
          resume: bool = False, device: str = "cpu", progress: bool = True, force: bool = False) -> dict:
    """Run every stage of ``method``; returns {stage: summary}. ``base_loader()`` → (model, preprocessor).

    ``checkpoint/identity.json`` records what the folder is trained from; a folder holding another run is
    refused (:func:`check_checkpoint_identity`) unless ``force``."""
    ckpt = Path(out_dir) / "checkpoint"
    identity = run_identity(method, mcfg, records, seed)
    check_checkpoint_identity(out_dir, identity, force)
    device = dist.process_device(device)
    if dist.is_main_process():
        atomic_write_json(ckpt / IDENTITY_FILE, identity)
    records = method.prepare_records(records)
    done: list[dict] = []
    summaries: dict[str, Any] = {}
    stages_file = ckpt / "stages.json"
    for stage in method.stages(mcfg):
        stage_dir = ckpt / stage.name
        if (stage_dir / "DONE").exists() and resume:
            done.append({"name": stage.name, "dir": stage.name})
            summaries[stage.name] = {"resumed": "already done"}
            continue
        torch.manual_seed(_seed_for(seed, stage.name))
        model, pre = base_loader()
        model = apply_checkpoint(model, ckpt, done)  # merge earlier stages
        cfg: TrainConfig = getattr(mcfg, stage.config_key)
        model = model if cfg.full_finetune else add_lora(model, cfg)
        model.to(device)
        summaries[stage.name] = train_stage(method, stage, mcfg, model, pre, records, stage_dir, seed,
                                            resume, device, progress, start_fingerprint=_weights_fingerprint(ckpt, done))
        done.append({"name": stage.name, "dir": stage.name})
        if dist.is_main_process():
            atomic_write_json(stages_file, {"method": method.name, "stages": done})
        del model
    return summaries
