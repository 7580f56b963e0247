"""Linear weights packed once per decode batch (bench.eval.prepack): the packed product equals the plain one up to
the last bits, other row counts fall back to ``F.linear``, forwards are restored, packing applies only to CPU
float32 inference within the memory budget, and the batched and beam decoders pack (rows leaving the batch
re-pack) while their texts stay equal to batch-1 ``generate``."""

import pytest
import torch

from bench.benchmark import GenerationSettings
from bench.eval import prepack
from bench.eval.prepack import PackedLinears, packable
from tests.test_engine_batched import _batched, _bs1, _captions, stopping_early
from tests.test_engine_beams import _engine

pytestmark = pytest.mark.skipif(not prepack._mkl_ops_available(), reason="torch built without MKL")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from bench.perf_shapes import build_model
    from bench.perf_eval import make_images

    model, pre = build_model("tiny", "cpu")
    return model, pre, make_images(tmp_path_factory.mktemp("img"), 6)


def _layer(inp=64, out=96, bias=True):
    torch.manual_seed(0)
    return torch.nn.Linear(inp, out, bias=bias)


def test_packed_product_matches_linear_and_other_row_counts_fall_back(monkeypatch):
    layer = _layer()
    x = torch.randn(8, 64)
    with torch.no_grad():
        packs = PackedLinears([layer], rows=8)
        torch.testing.assert_close(packs.linear(x, layer), torch.nn.functional.linear(x, layer.weight, layer.bias),
                                   rtol=1e-5, atol=1e-5)
        five = torch.randn(5, 64)
        assert torch.equal(packs.linear(five, layer), torch.nn.functional.linear(five, layer.weight, layer.bias))
        # a [rows, 1, features] input (a decode step's hidden states) counts its rows over the leading dims
        assert packs.linear(x[:, None], layer).shape == (8, 1, 96)


def test_set_rows_repacks_for_the_new_row_count(monkeypatch):
    layer = _layer(bias=False)
    x = torch.randn(5, 64)
    with torch.no_grad():
        packs = PackedLinears([layer], rows=8)
        packs.set_rows(5)
        expected = torch.nn.functional.linear(x, layer.weight)

        def unpacked(*a, **k):
            raise AssertionError("the packed path should have run")
        monkeypatch.setattr(torch.nn.functional, "linear", unpacked)
        torch.testing.assert_close(packs.linear(x, layer), expected, rtol=1e-5, atol=1e-5)
        monkeypatch.undo()
        packs.set_rows(1)  # one row left: the plain product
        one = torch.randn(1, 64)
        assert torch.equal(packs.linear(one, layer), torch.nn.functional.linear(one, layer.weight))


def test_installed_routes_forwards_through_the_packing_and_restores_them():
    layer = _layer()
    x = torch.randn(4, 64)
    with torch.no_grad():
        plain = layer(x)
        packs = PackedLinears([layer], rows=4)
        with packs.installed():
            assert "forward" in layer.__dict__
            torch.testing.assert_close(layer(x), plain, rtol=1e-5, atol=1e-5)
        assert "forward" not in layer.__dict__
        assert torch.equal(layer(x), plain)


def test_packing_applies_to_cpu_float32_inference_within_the_budget(monkeypatch):
    layer = _layer()
    with torch.no_grad():
        assert packable([layer], 32)
        assert not packable([], 32)
        assert not packable([layer], 1) and not packable([layer], prepack.MAX_PACKED_ROWS + 1)
        assert not packable([_layer().to(torch.bfloat16)], 32)
        monkeypatch.setattr(prepack, "PACK_BUDGET_BYTES", 1000)
        assert not packable([layer], 32)
    assert not packable([_layer()], 32)  # gradients on: training is never routed through packed weights


def _spy_rows(monkeypatch):
    rows = []
    real = PackedLinears.set_rows

    def set_rows(self, n):
        rows.append(n)
        return real(self, n)
    monkeypatch.setattr(PackedLinears, "set_rows", set_rows)
    return rows


def test_batched_decode_packs_repacks_as_rows_leave_and_equals_batch1_generate(tiny, monkeypatch):
    model, pre, images = tiny
    items = _captions(images)
    gen = GenerationSettings(max_new_tokens=12)
    eos_pre = stopping_early(pre, _bs1(model, pre, items, gen))
    ref = _bs1(model, eos_pre, items, gen)
    rows = _spy_rows(monkeypatch)
    assert _batched(model, eos_pre, items, gen) == ref
    assert rows[0] == len(items) and len(rows) > 1 and rows == sorted(rows, reverse=True)
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_beam_decode_packs_for_every_beam_row_and_equals_batch1_generate(tiny, monkeypatch):
    model, pre, images = tiny
    items = _captions(images)
    gen = GenerationSettings(max_new_tokens=8, num_beams=3)
    ref = _bs1(model, pre, items, gen)
    rows = _spy_rows(monkeypatch)
    out, skipped = _engine(model, pre, items, gen)
    assert out == ref and not skipped
    assert rows == [len(items) * 3]


def test_layers_whose_forward_was_replaced_on_the_instance_are_left_alone():
    """accelerate's offloading hooks replace ``module.forward`` on the instance: such a layer is not packed and
    keeps its own forward after decoding."""
    from bench.eval.prepack import linear_modules

    root = torch.nn.Sequential(_layer(), _layer(96, 64))
    hooked = root[1]
    hooked.forward = lambda x: torch.zeros(x.shape[0], 64)
    assert linear_modules(root) == [root[0]]
    with torch.no_grad():
        packs = PackedLinears(linear_modules(root), rows=4)
        with packs.installed():
            assert packs.routes(root[0], 4) and not packs.routes(hooked, 4) and not packs.routes(root[0], 3)
            assert torch.equal(hooked(torch.randn(4, 96)), torch.zeros(4, 64))
    assert "forward" in vars(hooked)
