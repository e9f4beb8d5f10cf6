"""The CPU kernels: attention against one softmax over the whole cache, the bf16 linear against a float64
matmul, their checks, and their fallback."""

import pytest
import torch
import torch.nn.functional as F

from ivideogpt.transformer import cpu_kernels
from ivideogpt.transformer.cache import FOLD_TOKENS, SplitLayer
from ivideogpt.transformer.cpu_kernels import (PackedBf16Weight, bf16_linear_available, cpu_extension,
                                               decode_attention_kernel, fused_ops_apply, kernel_applies)
from ivideogpt.transformer.decode import attend, linear, pack

needs_kernel = pytest.mark.skipif(decode_attention_kernel() is None, reason="no AVX-512 or no C++ compiler here")
needs_bf16_dot = pytest.mark.skipif(not bf16_linear_available(), reason="no AVX512_BF16 (or no kernels) here")


def _layer(batch: int, heads: int, dim: int, dtype: torch.dtype, share: int = 4) -> SplitLayer:
    """A cache with all three parts: 5 tokens shared by groups of `share` rows, a prefix, a 3-token tail."""
    def tokens(rows: int, count: int) -> torch.Tensor:
        return torch.randn(rows, heads, count, dim, dtype=dtype)

    layer = SplitLayer()
    layer.append(tokens(batch // share, 5), tokens(batch // share, 5))
    layer = layer.select_rows(repeats=share)
    for count in (FOLD_TOKENS + 5, 2, 1):  # appended at once, these fold into the prefix; 3 more stay in the tail
        layer.append(tokens(batch, count), tokens(batch, count))
    assert [part[2] for part in layer.parts()] == [share, 1, 1]
    return layer


def _softmax_over_whole_cache(query: torch.Tensor, layer: SplitLayer, scale: float) -> torch.Tensor:
    batch, heads, _, dim = query.shape
    attended = F.scaled_dot_product_attention(query.double(), layer.keys.double(), layer.values.double(), scale=scale)
    return attended.transpose(1, 2).reshape(batch, 1, heads * dim)


@needs_kernel
@pytest.mark.parametrize("dim", [16, 64, 256])
def test_kernel_equals_one_softmax_over_every_part_in_fp32(dim: int) -> None:
    torch.manual_seed(0)
    layer = _layer(8, 3, dim, torch.float32)
    query = 4 * torch.randn(8, 3, 1, dim)  # peaked softmaxes too
    assert kernel_applies(query, [layer.prefix[0]]) and not kernel_applies(query.bfloat16(), [layer.prefix[0]])
    expected = _softmax_over_whole_cache(query, layer, dim**-0.5)
    torch.testing.assert_close(attend(query, layer, dim**-0.5).double(), expected, rtol=1e-5, atol=1e-5)


@needs_kernel
def test_kernel_in_bf16_is_as_close_as_pytorch_ops() -> None:
    torch.manual_seed(1)
    layer = _layer(16, 4, 64, torch.bfloat16, share=16)
    query = torch.randn(16, 4, 1, 64, dtype=torch.bfloat16)
    expected = _softmax_over_whole_cache(query, layer, 0.125)
    kernel_error = (attend(query, layer, 0.125).double() - expected).abs().max()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ivideogpt.transformer.decode.kernel_applies", lambda query, cached: False)
        ops_error = (attend(query, layer, 0.125).double() - expected).abs().max()
    assert kernel_error <= ops_error and kernel_error < 0.02  # fp32 scores: no rounded bf16 matmul output


@needs_kernel
def test_kernel_rejects_what_it_cannot_read() -> None:
    kernel = decode_attention_kernel()
    query = torch.randn(4, 2, 64)
    keys = torch.randn(4, 2, 6, 64)
    with pytest.raises(RuntimeError, match="dtypes differ"):
        kernel(query, [keys.bfloat16()], [keys.bfloat16()], [1], 0.125)
    with pytest.raises(RuntimeError, match="contiguous D"):
        kernel(query, [keys.transpose(2, 3)], [keys], [1], 0.125)
    with pytest.raises(RuntimeError, match="share"):
        kernel(query, [keys[:3]], [keys[:3]], [1], 0.125)
    with pytest.raises(RuntimeError, match="multiple of 16"):
        kernel(torch.randn(4, 2, 24), [torch.randn(4, 2, 6, 24)], [torch.randn(4, 2, 6, 24)], [1], 0.125)


def test_unsupported_queries_use_pytorch_ops() -> None:
    torch.manual_seed(2)
    layer = _layer(4, 2, 24, torch.float32, share=2)  # head dim 24: not a multiple of 16
    query = torch.randn(4, 2, 1, 24)
    assert not kernel_applies(query, []) and not kernel_applies(query.double(), [])
    expected = _softmax_over_whole_cache(query, layer, 0.2)
    torch.testing.assert_close(attend(query, layer, 0.2).double(), expected, rtol=1e-5, atol=1e-5)


def test_switching_the_kernel_off_falls_back_with_a_warning(monkeypatch, caplog) -> None:
    monkeypatch.setenv(cpu_kernels.SWITCH, "0")
    cpu_extension.cache_clear()
    try:
        assert decode_attention_kernel() is None and not bf16_linear_available()
        assert not kernel_applies(torch.randn(2, 2, 1, 64), [])
    finally:
        monkeypatch.delenv(cpu_kernels.SWITCH)
        cpu_extension.cache_clear()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with caplog.at_level("WARNING"):
        assert decode_attention_kernel() is None
    cpu_extension.cache_clear()
    assert "lacks AVX-512" in caplog.text


def test_a_failed_build_falls_back_with_a_warning(monkeypatch, caplog) -> None:
    from torch.utils import cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension 'ivideogpt_cpu_kernels'")

    monkeypatch.setattr(cpp_extension, "load_inline", no_compiler)
    monkeypatch.setattr(cpu_kernels, "_unavailable_reason", lambda: None)  # as if the machine could build it
    cpu_extension.cache_clear()
    try:
        with caplog.at_level("WARNING"):
            assert decode_attention_kernel() is None and not bf16_linear_available()
            assert not isinstance(pack(torch.randn(48, 32, dtype=torch.bfloat16)), PackedBf16Weight)
    finally:
        cpu_extension.cache_clear()
    assert "build failed" in caplog.text and "Error building extension" in caplog.text


def test_the_build_depends_on_the_code_not_on_where_it_is_checked_out(monkeypatch) -> None:
    from torch.utils import cpp_extension

    calls = []
    monkeypatch.setattr(cpp_extension, "load_inline", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setattr(cpu_kernels, "_unavailable_reason", lambda: None)
    cpu_extension.cache_clear()
    try:
        cpu_extension()
    finally:
        cpu_extension.cache_clear()
    (args, kwargs), = calls
    # torch rebuilds whenever the hashed sources or arguments change: a path in them would make each
    # checkout on a machine rebuild the kernels over the other's build
    assert str(cpu_kernels.CSRC.parent) not in repr((args, kwargs))
    assert all(cpu_kernels.LOCAL_INCLUDE not in source for source in kwargs["cpp_sources"])
    assert "IVIDEOGPT_SIMD_H" in kwargs["cpp_sources"][0]


@needs_bf16_dot
@pytest.mark.parametrize("rows", [1, 8, 13, 16])
@pytest.mark.parametrize(("columns", "inputs"), [(96, 64), (100, 32), (40, 768)])  # whole and padded groups
def test_bf16_linear_is_a_float64_matmul_rounded_to_bf16(rows: int, columns: int, inputs: int) -> None:
    torch.manual_seed(3)
    weight = torch.randn(columns, inputs, dtype=torch.bfloat16)
    x = torch.randn(rows, 1, inputs, dtype=torch.bfloat16)
    packed = pack(weight)
    assert isinstance(packed, PackedBf16Weight)
    out = linear(x, packed, None)
    expected = x.double() @ weight.double().t()
    assert out.shape == (rows, 1, columns) and out.dtype == torch.bfloat16
    # fp32 sums, then one rounding to bf16 (8 significant bits): within half a bf16 step of the exact value
    torch.testing.assert_close(out.double(), expected, rtol=2**-8, atol=1e-4)


@needs_bf16_dot
def test_bf16_linear_adds_the_bias_and_rejects_a_wrong_width() -> None:
    weight, bias = torch.randn(48, 64, dtype=torch.bfloat16), torch.randn(48, dtype=torch.bfloat16)
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    torch.testing.assert_close(linear(x, pack(weight), bias), F.linear(x, weight, bias), rtol=2e-2, atol=2e-2)
    with pytest.raises(RuntimeError, match="x has 32 inputs, the weight 64"):
        cpu_extension().bf16_linear(torch.randn(4, 32, dtype=torch.bfloat16), PackedBf16Weight(weight).packed, 48)


def test_only_bf16_cpu_weights_with_even_inputs_go_to_the_bf16_kernel() -> None:
    assert not isinstance(pack(torch.randn(48, 64)), PackedBf16Weight)  # fp32: oneDNN's packing
    assert not isinstance(pack(torch.randn(48, 63, dtype=torch.bfloat16)), PackedBf16Weight)  # odd inputs
    packed = pack(torch.randn(48, 64, dtype=torch.bfloat16))
    assert isinstance(packed, PackedBf16Weight) == (bf16_linear_available())


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_layer_ops_equal_hf_modules(dtype: torch.dtype) -> None:
    from transformers.activations import SiLUActivation
    from transformers.models.llama.modeling_llama import LlamaRMSNorm, apply_rotary_pos_emb

    from ivideogpt.transformer.decode import rms_norm, split_rotate, swiglu

    torch.manual_seed(4)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2**-7, "atol": 2**-7}
    batch, heads, dim = 5, 3, 64
    norm = LlamaRMSNorm(heads * dim, eps=1e-5).to(dtype)
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(batch, 1, heads * dim, dtype=dtype)
    assert fused_ops_apply(x, norm.weight)  # the fused ops, not decode.py's fallbacks, are under test
    torch.testing.assert_close(rms_norm(norm, x), norm(x), **tolerance)

    qkv = torch.randn(batch, 1, 3 * heads * dim, dtype=dtype)
    angles = torch.rand(1, 1, dim // 2) * 6.0
    cos, sin = torch.cat([angles.cos()] * 2, -1).to(dtype), torch.cat([angles.sin()] * 2, -1).to(dtype)
    query, key, value = (part.view(batch, 1, heads, dim).transpose(1, 2) for part in qkv.chunk(3, dim=-1))
    expected = (*apply_rotary_pos_emb(query, key, cos, sin), value)
    for got, want in zip(split_rotate(qkv, cos, sin, dim), expected):
        assert got.shape == (batch, heads, 1, dim)
        torch.testing.assert_close(got, want, **tolerance)

    gate_up = 4 * torch.randn(batch, 1, 2 * 96, dtype=dtype)  # large gates: exp's both tails
    gate, up = gate_up.chunk(2, -1)
    torch.testing.assert_close(swiglu(SiLUActivation(), gate_up), SiLUActivation()(gate) * up, **tolerance)


@needs_kernel
def test_fused_layer_ops_reject_what_they_cannot_read() -> None:
    ops = cpu_extension()
    with pytest.raises(RuntimeError, match="multiple of 16"):
        ops.rms_norm(torch.randn(2, 24), torch.ones(24), 1e-5)
    with pytest.raises(RuntimeError, match="D a multiple of 32"):
        ops.split_rotate(torch.randn(2, 3 * 2 * 16), torch.ones(16), torch.ones(16), 2)
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        ops.swiglu(torch.randn(2, 64, dtype=torch.float64))


def test_a_lock_left_by_a_killed_build_is_removed_not_waited_for(monkeypatch, tmp_path, caplog) -> None:
    from torch.utils import cpp_extension

    (tmp_path / "lock").write_text("")  # torch's lock file, as a build stopped by Ctrl-C leaves it
    seen = []
    monkeypatch.setattr(cpp_extension, "load_inline",
                        lambda *args, **kwargs: seen.append((kwargs["build_directory"], (tmp_path / "lock").exists())))
    monkeypatch.setattr(cpu_kernels, "_unavailable_reason", lambda: None)
    monkeypatch.setattr(cpu_kernels, "_build_directory", lambda: tmp_path)
    cpu_extension.cache_clear()
    try:
        with caplog.at_level("WARNING"):
            cpu_extension()
    finally:
        cpu_extension.cache_clear()
    assert seen == [(str(tmp_path), False)] and "stopped midway" in caplog.text


def test_each_torch_installation_builds_in_its_own_folder(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    here = cpu_kernels._build_directory()
    assert here.parent == tmp_path and here.name.startswith(cpu_kernels.NAME) and here.is_dir()
    monkeypatch.setattr(torch, "__file__", "/another/venv/lib/python3.11/site-packages/torch/__init__.py")
    assert cpu_kernels._build_directory().name != here.name


def test_a_file_system_without_locks_still_builds(monkeypatch, tmp_path) -> None:
    import fcntl

    def no_locks(*args):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    (tmp_path / "lock").write_text("")  # cannot be told from a live build's without the lock: kept
    with cpu_kernels._building_alone(tmp_path):
        built = True
    assert built and (tmp_path / "lock").exists()
