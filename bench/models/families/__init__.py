"""Built-in model families (importing this package registers them in :data:`bench.models.family.FAMILIES`)."""

from bench.models.families import instructblip, llava, llava_next, minigpt4, qwen2_vl  # noqa: F401
