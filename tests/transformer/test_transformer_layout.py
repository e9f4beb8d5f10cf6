"""Sequence layout invariants: vocabulary ranges, slots, positions, targets, per-frame indices."""

import pytest
import torch

from ivideogpt.transformer.layout import SequenceLayout


def test_paper_vocabulary() -> None:
    layout = SequenceLayout(8192)
    assert layout.vocab_size == 16386
    assert (layout.future_offset, layout.context_slot, layout.future_slot) == (8192, 16384, 16385)
    assert layout.length(1, 15) == 257 + 15 * 17


@pytest.mark.parametrize("num_context", [1, 2, 3])
@pytest.mark.parametrize("num_future", [0, 1, 4])
def test_layout_invariants(num_context: int, num_future: int) -> None:
    k = 32
    layout = SequenceLayout(k, context_grid=(4, 4), future_grid=(2, 3))
    ctx = torch.randint(0, k, (2, num_context, 4, 4))
    fut = torch.randint(0, k, (2, num_future, 2, 3))
    ids = layout.build_ids(ctx, fut)
    length = layout.length(num_context, num_future)
    assert ids.shape == (2, length) and length == num_context * 17 + num_future * 7
    assert torch.equal(layout.positions(num_context, num_future), torch.arange(length))

    slots = layout.slot_index(num_context, num_future)
    last = layout.last_token_index(num_context, num_future)
    assert slots.shape == last.shape == (num_context + num_future,)
    assert (ids[:, slots[:num_context]] == layout.context_slot).all()
    assert (ids[:, slots[num_context:]] == layout.future_slot).all()
    assert torch.equal(last[:-1] + 1, slots[1:]) and int(last[-1]) == length - 1
    assert int((ids >= layout.context_slot).sum()) == 2 * (num_context + num_future)  # exactly one slot per frame

    mask = layout.target_mask(num_context, num_future)
    assert mask.shape == (length,) and int(mask.sum()) == num_future * 6
    assert ((ids[:, mask] >= k) & (ids[:, mask] < 2 * k)).all()  # targets: future codes only
    context_part = ids[:, : layout.length(num_context, 0)]
    assert ((context_part < k) | (context_part == layout.context_slot)).all()
    assert not mask[: layout.length(num_context, 0)].any()  # context is never a target
    assert not mask[slots].any()  # slots are known, never targets
    assert torch.equal(layout.target_index(num_context, num_future), mask.nonzero().squeeze(1))
    if num_future:
        assert mask[last[num_context:]].all()  # a future frame's last token is one of its codes
    assert torch.equal(layout.split_future(ids, num_context), fut)


def test_future_block_matches_build() -> None:
    layout = SequenceLayout(16, (2, 2), (2, 2))
    ctx, fut = torch.randint(0, 16, (3, 1, 2, 2)), torch.randint(0, 16, (3, 1, 2, 2))
    built = layout.build_ids(ctx, fut)
    assert torch.equal(built[:, 5:], layout.future_ids_block(fut.flatten(2)[:, 0]))
    assert torch.equal(layout.build_ids(ctx), built[:, :5])


@pytest.mark.parametrize("bad, message", [
    (torch.full((1, 1, 2, 2), 16), r"\[0, 16\)"),
    (torch.full((1, 1, 2, 2), -1), r"\[0, 16\)"),
    (torch.zeros(1, 1, 2, 2), "integer"),
    (torch.zeros(1, 1, 3, 2, dtype=torch.long), r"\(B, T, 2, 2\)"),
])
def test_bad_ids_are_rejected(bad: torch.Tensor, message: str) -> None:
    layout = SequenceLayout(16, (2, 2), (2, 2))
    with pytest.raises(ValueError, match=message):
        layout.build_ids(bad)
    with pytest.raises(ValueError, match=message):
        layout.build_ids(torch.zeros(1, 1, 2, 2, dtype=torch.long), bad)


def test_cell_centres_share_one_image_frame() -> None:
    layout = SequenceLayout(8, context_grid=(4, 4), future_grid=(2, 2))
    length = layout.length(2, 2)  # 2 x (1 + 16) + 2 x (1 + 4) = 44
    centers, is_code = layout.cell_centers(2, torch.arange(length))
    assert centers.shape == (length, 2) and is_code.shape == (length,)
    assert not is_code[layout.slot_index(2, 2)].any() and int(is_code.sum()) == 2 * 16 + 2 * 4
    torch.testing.assert_close(centers[1], torch.tensor([0.125, 0.125]))  # first context code: top-left cell
    torch.testing.assert_close(centers[1 + 6], torch.tensor([0.625, 0.375]))  # context row 1, column 2
    first_future = layout.length(2, 0) + 1
    torch.testing.assert_close(centers[first_future + 3], torch.tensor([0.75, 0.75]))  # future bottom-right
    # the second context frame and the second future frame repeat the first ones' coordinates
    torch.testing.assert_close(centers[18:34], centers[1:17])
    torch.testing.assert_close(centers[first_future + 5 : first_future + 9], centers[first_future : first_future + 4])


def test_action_index_slot_or_whole_frame() -> None:
    layout = SequenceLayout(8, (2, 2), (1, 2))  # context frames of 5 tokens, future frames of 3
    positions, owner = layout.action_index(2, 2)
    assert positions.tolist() == [5, 10, 13] and owner.tolist() == [0, 1, 2]
    positions, owner = layout.action_index(2, 2, whole_frame=True)
    assert positions.tolist() == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    assert owner.tolist() == [0] * 5 + [1] * 3 + [2] * 3
    assert layout.action_index(1, 0, whole_frame=True)[0].numel() == 0  # one frame: no transition


@pytest.mark.parametrize("num_context", [1, 2, 3])
@pytest.mark.parametrize("num_future", [0, 1, 4])
def test_official_variant_is_the_slotted_sequence_without_its_first_token(num_context: int, num_future: int) -> None:
    slotted = SequenceLayout(32, (4, 4), (2, 2))
    official = SequenceLayout(32, (4, 4), (2, 2), variant="official")
    ctx, fut = torch.randint(0, 32, (2, num_context, 4, 4)), torch.randint(0, 32, (2, num_future, 2, 2))
    ids = official.build_ids(ctx, fut)
    assert torch.equal(ids, slotted.build_ids(ctx, fut)[:, 1:])
    assert official.length(num_context, num_future) == 17 * num_context - 1 + 5 * num_future == ids.shape[1]
    assert torch.equal(official.last_token_index(num_context, num_future),
                       slotted.last_token_index(num_context, num_future) - 1)
    slots = official.slot_index(num_context, num_future)
    assert int(slots[0]) == -1 and torch.equal(slots[1:], slotted.slot_index(num_context, num_future)[1:] - 1)
    assert torch.equal(official.split_future(ids, num_context), fut)
    assert official.num_future(ids.shape[1], num_context) == num_future
    codes = official.target_mask(num_context, num_future, codes_only=True)
    assert torch.equal(codes, slotted.target_mask(num_context, num_future)[1:])
    targets = official.target_mask(num_context, num_future)  # plus every future slot but the first
    assert int(targets.sum()) == 4 * num_future + max(num_future - 1, 0)
    assert (ids[:, targets & ~codes] == official.future_slot).all()
    positions = torch.arange(ids.shape[1])
    assert torch.equal(official.cell_centers(num_context, positions)[0],
                       slotted.cell_centers(num_context, positions + 1)[0])


def test_official_actions_enter_only_future_slots() -> None:
    layout = SequenceLayout(8192, variant="official")
    positions, owner = layout.action_index(2, 3)
    assert positions.tolist() == [513, 530, 547] and owner.tolist() == [1, 2, 3]  # the paper code's start_index
    whole, whole_owner = layout.action_index(2, 3, whole_frame=True)
    assert int(whole[0]) == 513 and len(whole) == 3 * 17 and whole_owner.tolist() == [1] * 17 + [2] * 17 + [3] * 17
    assert not layout.uses_context_actions and SequenceLayout(8192).uses_context_actions
    with pytest.raises(ValueError, match="layout variant"):
        SequenceLayout(8192, variant="paper")
