"""The split KV cache: appends written in place into an owned tail, never into what another state can see."""

import torch

from ivideogpt.transformer.cache import FOLD_TOKENS, GrowingCache, SplitLayer


def _tokens(count: int, rows: int = 2) -> torch.Tensor:
    return torch.randn(rows, 3, count, 8)


def _append(layer: SplitLayer, keys: torch.Tensor) -> None:
    layer.append(keys, -keys)  # values mirror keys, so both are checked


def test_appends_fill_the_tail_buffer_then_fold_into_the_prefix() -> None:
    layer, written = SplitLayer(), []
    for _ in range(FOLD_TOKENS + 3):
        written.append(_tokens(1))
        before = layer.tail
        _append(layer, written[-1])
        if before is not None and layer.prefix is None:
            assert layer.tail[0].data_ptr() == before[0].data_ptr()  # the same buffer, no copy
    assert layer.prefix[0].shape[2] == FOLD_TOKENS and layer.tail[0].shape[2] == 3
    torch.testing.assert_close(layer.keys, torch.cat(written, 2), rtol=0, atol=0)
    torch.testing.assert_close(layer.values, -torch.cat(written, 2), rtol=0, atol=0)


def test_shared_states_append_independently() -> None:
    base = SplitLayer()
    _append(base, _tokens(5))
    seen_keys, seen_tail = base.keys.clone(), base.tail[0].data_ptr()
    fork = base.select_rows()  # shares every tensor; the tail buffer stays base's
    first, second = _tokens(1), _tokens(1)
    _append(base, first)
    _append(fork, second)
    torch.testing.assert_close(base.keys, torch.cat([seen_keys, first], 2), rtol=0, atol=0)
    torch.testing.assert_close(fork.keys, torch.cat([seen_keys, second], 2), rtol=0, atol=0)
    assert base.tail[0].data_ptr() == seen_tail  # base still appends in place
    assert fork.tail_buffer[0].data_ptr() != seen_tail


def test_a_view_handed_out_never_changes() -> None:
    cache = GrowingCache(1)
    cache.layers[0].append(_tokens(4), _tokens(4))
    view = cache.layers[0].keys  # e.g. what HF's forward got from `update`
    kept = view.clone()
    copy = cache.copy()
    for layer in (cache.layers[0], copy.layers[0]):
        for _ in range(3):
            _append(layer, _tokens(1))
    torch.testing.assert_close(view, kept, rtol=0, atol=0)


def test_an_inference_buffer_is_copied_outside_inference_mode() -> None:
    layer = SplitLayer()
    with torch.inference_mode():
        _append(layer, _tokens(2))
    extra = _tokens(1)
    with torch.no_grad():
        _append(layer, extra)  # writing into the inference tensor here would raise
    assert layer.keys.shape[2] == 3 and torch.equal(layer.keys[:, :, 2:], extra)
