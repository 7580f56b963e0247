import pytest
import torch
from PIL import Image

from bench.errors import BenchError, DataError
from bench.models.llava import (IGNORE_INDEX, VICUNA_V1_SYSTEM, build_prompt, load_image, make_preprocessor,
                                pad_to_square)
from tests.tiny_model import build


@pytest.fixture(scope="module")
def pre(tmp_path_factory):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    path = build(tmp_path_factory.mktemp("tiny"))
    model = LlavaForConditionalGeneration.from_pretrained(path)
    return make_preprocessor(AutoProcessor.from_pretrained(path), model.config), model


def test_prompt_is_vicuna_v1_with_system_sentence():
    assert build_prompt("Is there a dog in the image?") == (
        f"{VICUNA_V1_SYSTEM} USER: <image>\nIs there a dog in the image? ASSISTANT:")
    assert build_prompt("<image>\nDescribe.") == f"{VICUNA_V1_SYSTEM} USER: <image>\nDescribe. ASSISTANT:"


def test_pad_to_square_centres_on_clip_mean_colour():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    sq = pad_to_square(img, (122, 116, 104))
    assert sq.size == (40, 40)
    assert sq.getpixel((0, 0)) == (122, 116, 104) and sq.getpixel((20, 20)) == (255, 0, 0)
    assert sq.getpixel((20, 9)) == (122, 116, 104) and sq.getpixel((20, 10)) == (255, 0, 0)
    same = Image.new("RGB", (8, 8))
    assert pad_to_square(same, (0, 0, 0)) is same


def test_background_is_int_255_times_image_mean(pre):
    p, _ = pre
    mean = p.image_processor.image_mean
    assert p.background == tuple(int(255 * m) for m in mean)


def test_image_tokens_expanded_and_labels_mask_prompt(pre):
    p, model = pre
    enc = p.encode_pair("is there dog", "yes", max_length=256)
    ids, labels = enc["input_ids"], enc["labels"]
    n_img = (model.config.vision_config.image_size // model.config.vision_config.patch_size) ** 2
    assert p.num_image_tokens == n_img == 16
    assert ids.count(model.config.image_token_id) == n_img
    first = ids.index(model.config.image_token_id)
    assert ids[first:first + n_img] == [model.config.image_token_id] * n_img  # contiguous block
    assert ids[0] == p.tokenizer.bos_token_id
    supervised = [t for t, l in zip(ids, labels) if l != IGNORE_INDEX]
    assert supervised == p.tokenizer(" yes", add_special_tokens=False)["input_ids"] + [p.tokenizer.eos_token_id]
    assert all(l == IGNORE_INDEX for l in labels[: enc["prompt_len"]])


def test_expanded_sequence_runs_through_the_model(pre):
    p, model = pre
    enc = p.encode_pair("is there dog", "yes", max_length=256)
    pv = p.pixel_values([Image.new("RGB", (50, 30), (0, 200, 0))])
    assert pv.shape == (1, 3, 32, 32)
    out = model(input_ids=torch.tensor([enc["input_ids"]]), pixel_values=pv,
                labels=torch.tensor([enc["labels"]]))
    assert torch.isfinite(out.loss)


def test_too_long_sequence_is_refused_not_truncated(pre):
    p, _ = pre
    with pytest.raises(BenchError, match="exceeds max_length 20"):
        p.encode_pair("is there dog", "yes", max_length=20, where="sample 7")


def test_missing_image_names_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.png.*image file not found"):
        load_image(tmp_path / "missing.png", item="q1")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="unreadable image"):
        load_image(bad)
