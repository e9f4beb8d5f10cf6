"""The token sequence layout: vocabulary offsets, slot tokens, targets and per-frame indices.

For codebook size K the vocabulary has 2K + 2 ids: context codes 0..K-1, future codes K..2K-1,
then the slot tokens [S1] = 2K (before each context frame) and [S2] = 2K + 1 (before each future
frame). A segment of Tc context and Tf future frames reads

    [S1] c(h*w) ... [S1] c(h*w)  [S2] f(h'*w') ... [S2] f(h'*w')

with positions 0..L-1. Targets are the future code tokens only (context is never predicted, slots
are known); the output at index i predicts the token at i + 1. Actions enter at slot tokens (or at
every token of the frame they lead into), rewards are read at each frame's last token. Nothing here
assumes a fixed number of frames.

The variant "official" is the sequence of the paper's released code and checkpoints, which RoPE
positions (and so logits) depend on: the same vocabulary, but no slot before the first context frame

    c(h*w) [S1] c(h*w) ... [S2] f(h'*w') [S2] f(h'*w') ...

(a prelude of Tc * (1 + h*w) - 1 tokens), actions enter only at the slots of future frames, and the
loss also predicts every future slot but the first. It is the "slotted" sequence without its first
token, so its indices are the slotted ones minus one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor


VARIANTS = ("slotted", "official")


@dataclass(frozen=True)
class SequenceLayout:
    """Owns every index computation of the flattened (context, future) token sequence."""

    codebook_size: int
    context_grid: tuple[int, int] = (16, 16)
    future_grid: tuple[int, int] = (4, 4)
    variant: Literal["slotted", "official"] = "slotted"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"layout variant must be one of {VARIANTS}; got {self.variant!r}")

    @property
    def uses_context_actions(self) -> bool:
        """Whether actions between context frames enter the sequence (not in the official variant)."""
        return self.variant == "slotted"

    @property
    def lead(self) -> int:
        """Tokens before the first context code: 1 ([S1]) when slotted, 0 in the official variant."""
        return 1 if self.variant == "slotted" else 0

    # --- vocabulary -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return 2 * self.codebook_size + 2

    @property
    def future_offset(self) -> int:
        """Added to a future frame's codebook index to get its vocabulary id."""
        return self.codebook_size

    @property
    def context_slot(self) -> int:
        """[S1]: precedes every context frame."""
        return 2 * self.codebook_size

    @property
    def future_slot(self) -> int:
        """[S2]: precedes every future frame."""
        return 2 * self.codebook_size + 1

    # --- lengths ----------------------------------------------------------------------------
    @property
    def context_codes(self) -> int:
        return self.context_grid[0] * self.context_grid[1]

    @property
    def future_codes(self) -> int:
        return self.future_grid[0] * self.future_grid[1]

    def frame_lengths(self, num_context: int, num_future: int) -> Tensor:
        """(T,) tokens per frame, slot included."""
        self._check_counts(num_context, num_future)
        lengths = torch.tensor([1 + self.context_codes] * num_context + [1 + self.future_codes] * num_future,
                               dtype=torch.long)
        if len(lengths):
            lengths[0] -= 1 - self.lead
        return lengths

    def length(self, num_context: int, num_future: int) -> int:
        """Total tokens L of a segment."""
        self._check_counts(num_context, num_future)
        whole = num_context * (1 + self.context_codes) + num_future * (1 + self.future_codes)
        return whole - (1 - self.lead) if whole else 0

    # --- indices ----------------------------------------------------------------------------
    def positions(self, num_context: int, num_future: int) -> Tensor:
        """(L,) position ids 0..L-1 (RoPE has no maximum, so any length works)."""
        return torch.arange(self.length(num_context, num_future))

    def slot_index(self, num_context: int, num_future: int) -> Tensor:
        """(T,) index of each frame's slot token (-1 for the official variant's first frame, which has none)."""
        lengths = self.frame_lengths(num_context, num_future)
        starts = torch.cumsum(lengths, 0) - lengths
        if len(starts) and not self.lead:
            starts[0] = -1
        return starts

    def action_index(self, num_context: int, num_future: int, whole_frame: bool = False) -> tuple[Tensor, Tensor]:
        """Where actions enter: (P,) sequence positions and (P,) the action added at each.

        Action t leads from frame t to t + 1 and is added at frame t+1's slot, or with `whole_frame`
        at the slot and every code of frame t+1. The official variant adds only the actions that
        lead into future frames (t >= num_context - 1), at their slots.
        """
        first = 1 if self.variant == "slotted" else max(num_context, 1)
        slots = self.slot_index(num_context, num_future)[first:]
        owner = torch.arange(first - 1, first - 1 + len(slots))
        if not whole_frame:
            return slots, owner
        # Frames are contiguous: frames first..T-1 are every position from the first one's slot on.
        lengths = self.frame_lengths(num_context, num_future)
        start = int(slots[0]) if len(slots) else int(lengths.sum())
        return torch.arange(start, int(lengths.sum())), owner.repeat_interleave(lengths[first:])

    def last_token_index(self, num_context: int, num_future: int) -> Tensor:
        """(T,) index of each frame's last code token; the reward of frame t is read there."""
        return torch.cumsum(self.frame_lengths(num_context, num_future), 0) - 1

    def target_mask(self, num_context: int, num_future: int, codes_only: bool = False) -> Tensor:
        """(L,) bool, True at the tokens the loss predicts: future codes (and, official variant, future slots
        after the first, unless `codes_only`)."""
        lengths = self.frame_lengths(num_context, num_future)
        is_future = torch.arange(num_context + num_future) >= num_context
        within = torch.cat([torch.arange(int(n)) for n in lengths]) if len(lengths) else torch.zeros(0, dtype=torch.long)
        mask = is_future.repeat_interleave(lengths) & (within > 0)
        if self.variant == "official" and not codes_only and num_future > 1:
            mask[self.slot_index(num_context, num_future)[num_context + 1:]] = True
        return mask

    def target_index(self, num_context: int, num_future: int, codes_only: bool = False) -> Tensor:
        """Indices of the target tokens in sequence order: (Tf * h'w',) future codes, plus slots (see target_mask)."""
        return self.target_mask(num_context, num_future, codes_only).nonzero().squeeze(1)

    def cell_centers(self, num_context: int, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Where in the frame each sequence position's code sits: (q, 2) (x, y) cell centres in (0, 1), (q,) bool.

        Context codes (on the `context_grid`) and future codes (on the coarser `future_grid`) share
        one image coordinate frame, so a future code and the context codes over the same region get
        nearby coordinates. Slot tokens are not in the frame: their mask entry is False.
        """
        positions = positions.long() + (1 - self.lead)  # as positions of the slotted sequence
        context_span = num_context * (1 + self.context_codes)
        in_context = positions < context_span
        within = torch.where(in_context, positions % (1 + self.context_codes),
                             (positions - context_span) % (1 + self.future_codes))
        cell = (within - 1).clamp_min(0)
        rows = torch.where(in_context, self.context_grid[0], self.future_grid[0])
        cols = torch.where(in_context, self.context_grid[1], self.future_grid[1])
        row, col = cell // cols, cell % cols
        centers = torch.stack([(col + 0.5) / cols, (row + 0.5) / rows], dim=-1)
        return centers.float(), within > 0

    # --- ids --------------------------------------------------------------------------------
    def build_ids(self, context_ids: Tensor, future_ids: Tensor | None = None) -> Tensor:
        """Codebook indices -> vocabulary ids.

        context_ids: (B, Tc, h, w) long in [0, K); future_ids: (B, Tf, h', w') long in [0, K) or None.
        Returns (B, L) long; the context part is (B, Tc*(1+hw)), one less in the official variant.
        """
        self.check_codes(context_ids, self.context_grid, "context_ids")
        batch = context_ids.shape[0]
        slots = torch.full((batch, context_ids.shape[1], 1), self.context_slot, dtype=torch.long,
                           device=context_ids.device)
        parts = [torch.cat([slots, context_ids.long().flatten(2)], dim=2).flatten(1)[:, 1 - self.lead:]]
        if future_ids is not None:
            self.check_codes(future_ids, self.future_grid, "future_ids")
            if future_ids.shape[0] != batch:
                raise ValueError(f"future_ids batch {future_ids.shape[0]} != context_ids batch {batch}")
            slots = torch.full((batch, future_ids.shape[1], 1), self.future_slot, dtype=torch.long,
                               device=future_ids.device)
            codes = future_ids.long().flatten(2) + self.future_offset
            parts.append(torch.cat([slots, codes], dim=2).flatten(1))  # (B, Tf*(1+h'w'))
        return torch.cat(parts, dim=1)

    def future_ids_block(self, future_codes: Tensor) -> Tensor:
        """(B, h'w') codebook indices of one new future frame -> (B, 1 + h'w') ids with its [S2] slot."""
        slot = torch.full_like(future_codes[:, :1], self.future_slot)
        return torch.cat([slot, future_codes.long() + self.future_offset], dim=1)

    def num_future(self, length: int, num_context: int) -> int:
        """Future frames in `length` tokens after `num_context` context frames; ValueError unless whole frames."""
        per_frame = 1 + self.future_codes
        rest = length - self.length(num_context, 0)
        if rest < 0 or rest % per_frame:
            raise ValueError(f"sequence of {length} tokens is not {num_context} context frames "
                             f"plus whole future frames of {per_frame} tokens")
        return rest // per_frame

    def split_future(self, ids: Tensor, num_context: int) -> Tensor:
        """(B, L) ids -> (B, Tf, h', w') codebook indices of the future frames."""
        num_future = self.num_future(ids.shape[1], num_context)
        frames = ids[:, self.length(num_context, 0):].reshape(ids.shape[0], num_future, 1 + self.future_codes)
        return (frames[:, :, 1:] - self.future_offset).reshape(ids.shape[0], -1, *self.future_grid)

    def check_codes(self, codes: Tensor, grid: tuple[int, int], name: str) -> None:
        """Raise ValueError unless `codes` is an integer (B, T, *grid) tensor with values in [0, K)."""
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer tensor, got dtype {codes.dtype}")
        if codes.ndim != 4 or tuple(codes.shape[2:]) != tuple(grid):
            raise ValueError(f"{name} must be shaped (B, T, {grid[0]}, {grid[1]}), got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"{name} values must be in [0, {self.codebook_size}), "
                             f"got range [{int(codes.min())}, {int(codes.max())}]")

    def _check_counts(self, num_context: int, num_future: int) -> None:
        if num_context < 0 or num_future < 0:
            raise ValueError(f"frame counts must be >= 0, got num_context={num_context}, num_future={num_future}")
