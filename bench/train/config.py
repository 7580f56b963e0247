"""Hyper-parameters of the one shared training loop (one dataclass per stage of a method)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.errors import BenchError

LLAMA_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Linear layers of llava-hf's CLIP vision tower and of the multimodal projector (``lora_vision``).
CLIP_LINEARS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
PROJECTOR_LINEARS = ["linear_1", "linear_2"]


@dataclass
class TrainConfig:
    """Loop settings. Defaults are HA-DPO's LLaVA-1.5-7B script (methods.md §1.2) unless a method overrides.

    lr: peak learning rate (AdamW, cosine decay after linear warmup of ``warmup_ratio`` of the steps, or of
        ``warmup_steps`` steps when that is set).
    epochs / max_steps: run length; ``max_steps`` (optimizer steps) wins when set.
    batch_size: samples (pairs) per micro-batch *per process*; grad_accum micro-batches per optimizer step
        (global batch = batch_size × grad_accum × processes, see bench/train/distributed.py).
    max_length: tokens per sequence *including* the expanded image tokens (LLaVA's
        ``model_max_length`` semantics); longer samples are an error, never silently truncated.
    lora_*: LoRA on the language model's linear layers (``lora_targets`` are module-name suffixes,
        matched only inside the language model, never the vision tower or projector).
    lora_vision: also put LoRA on every linear layer of the vision tower and the projector (OPA-DPO's
        OPA step does, methods.md §4.2); those LoRA weights train while the base weights stay frozen.
    full_finetune: train every language-model weight instead of LoRA.
    train_projector: also train the multimodal projector (HA-DPO/HSA-DPO's code path does, see
        methods.md §1.2; POVID's and OPA-DPO's does not).
    reference_projector: which projector the reference forward uses when ``train_projector`` (preference stages):
        ``"frozen"`` a frozen copy of the projector's starting weights (the reference is then fixed, so its
        log-probs are cached); ``"policy"`` the policy's *current* projector, no gradient (HA-DPO/HSA-DPO's
        trainers build the reference's input embeddings with the policy's projector); the reference then moves
        with the projector and is computed online at every step, never cached. Ignored when the projector is
        frozen (both settings are the same model).
    sync_gradients: all-reduce gradients over processes before each update (DDP). ``False`` wraps every
        backward in ``no_sync``: each process updates its own copy from its own shard and only the main
        process's weights are saved (OPA-DPO's trainer, see methods/opa_dpo.py); a no-op on one process.
        ``--resume`` restarts every process from the main process's weights, so it is not step-exact then.
    scheduler_step_every: advance the learning-rate schedule once every N optimizer updates (OPA-DPO steps it
        once per outer rollout step of 2 updates); warmup and schedule length count scheduler steps
        (``ceil(steps / N)``), so with N = 2 the lr is a staircase held for two updates.
    disable_dropout: set every dropout p to 0 in policy and reference (all four seeds do).
    cache_reference: compute reference log-probs once per (sample, sequence) and store them.
    gradient_checkpointing: recompute activations in backward (transformers' non-reentrant checkpointing of
        every decoder / encoder layer); same loss and gradients, less activation memory, ~30% more compute.
    share_prefix: run the sequences of a record that use the same image and prompt (DPO's chosen and rejected)
        as one packed row — prompt + image prefix computed once, each response attending to it and to itself
        (block-causal 4-D mask, positions restarting after the prefix; :mod:`bench.train.shared_prefix`). The same
        log-probs and gradients to float rounding, fewer tokens per pair. Off by default (float rounding would
        change trained adapters); falls back to padded rows where the family or attention kernel cannot (Qwen2-VL,
        InstructBLIP, flash-attention). Recorded in identities and fingerprints when on.
    log_with: experiment trackers, ``"tensorboard"``, ``"wandb"`` or both comma-separated (their package
        must be installed); not part of the stage fingerprint (it does not change the run).
    """

    lr: float = 2e-6
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 4
    grad_accum: int = 1
    warmup_ratio: float = 0.03
    warmup_steps: int | None = None
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 2048
    lora_r: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: list(LLAMA_LINEARS))
    lora_vision: bool = False
    full_finetune: bool = False
    train_projector: bool = False
    reference_projector: str = "frozen"
    sync_gradients: bool = True
    scheduler_step_every: int = 1
    disable_dropout: bool = True
    cache_reference: bool = True
    bf16: bool = True
    gradient_checkpointing: bool = False
    share_prefix: bool = False
    save_every: int = 0
    log_every: int = 1
    log_with: str | None = None

    def __post_init__(self) -> None:
        """Values that cannot describe a run are refused when the config is built (CLI, YAML or code)."""
        problems = []

        def need(ok: bool, text: str) -> None:
            if not ok:
                problems.append(text)

        need(self.lr > 0 and self.lr == self.lr and self.lr != float("inf"), f"lr={self.lr!r} must be > 0")
        need(self.epochs >= 1, f"epochs={self.epochs!r} must be >= 1")
        need(self.max_steps is None or self.max_steps >= 1, f"max_steps={self.max_steps!r} must be >= 1 or none")
        need(self.batch_size >= 1, f"batch_size={self.batch_size!r} must be >= 1")
        need(self.grad_accum >= 1, f"grad_accum={self.grad_accum!r} must be >= 1")
        need(0.0 <= self.warmup_ratio <= 1.0, f"warmup_ratio={self.warmup_ratio!r} must lie in [0, 1]")
        need(self.warmup_steps is None or self.warmup_steps >= 0, f"warmup_steps={self.warmup_steps!r} must be >= 0")
        need(self.weight_decay >= 0, f"weight_decay={self.weight_decay!r} must be >= 0")
        need(self.max_grad_norm > 0, f"max_grad_norm={self.max_grad_norm!r} must be > 0")
        need(self.max_length >= 1, f"max_length={self.max_length!r} must be >= 1")
        need(self.lora_r >= 1, f"lora_r={self.lora_r!r} must be >= 1")
        need(self.lora_alpha > 0, f"lora_alpha={self.lora_alpha!r} must be > 0")
        need(0.0 <= self.lora_dropout < 1.0, f"lora_dropout={self.lora_dropout!r} must lie in [0, 1)")
        need(self.save_every >= 0, f"save_every={self.save_every!r} must be >= 0")
        need(self.log_every >= 1, f"log_every={self.log_every!r} must be >= 1")
        if problems:
            raise BenchError("train: " + "; ".join(problems))
