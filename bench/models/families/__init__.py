"""Built-in model families (importing this package registers them in :data:`bench.models.family.FAMILIES`)."""

from bench.models.families import llava, llava_next, qwen2_vl  # noqa: F401
