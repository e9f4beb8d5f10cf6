"""The memory check before a model is built: codebook- and vocabulary-sized tensors against the memory free."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ivideogpt.configuration import ConfigError
from ivideogpt.tokenizer.config import TokenizerConfig, tokenizer_64, tokenizer_cpu
from ivideogpt.train import memory
from ivideogpt.transformer.config import transformer_medium, transformer_small

CPU = torch.device("cpu")


def test_the_paper_sizes_pass() -> None:
    assert memory.codebook_bytes(tokenizer_64()) < 2**25  # 2 x 8192 x 64 codes, with gradients and AdamW moments
    assert memory.vocabulary_bytes(transformer_medium(codebook_size=8192)) < 2**30  # the 16,386-id vocabulary
    memory.check_codebook(tokenizer_64(), CPU)
    memory.check_vocabulary(transformer_small(codebook_size=8192), CPU)


def test_an_absurd_codebook_is_refused_in_one_line() -> None:
    config = TokenizerConfig(codebook_size=10**12)  # 10^12 x 64 floats: no machine holds them
    with pytest.raises(ConfigError, match=r"^tokenizer.codebook_size=1000000000000 needs [\d.,]+ GB to train but "
                                          r"[\d.,]+ GB is free on cpu; lower tokenizer.codebook_size$"):
        memory.check_codebook(config, CPU)


def test_fsq_has_no_table_but_its_histogram_and_the_vocabulary_grow_with_it() -> None:
    assert memory.codebook_bytes(tokenizer_cpu()) == 1000 * memory.HISTOGRAM_BYTES_PER_ID  # no code table
    levels = (2**10,) * 4
    config = TokenizerConfig(quantizer="fsq", fsq_levels=levels, embed_dim=4, codebook_size=2**40)
    with pytest.raises(ConfigError, match=r"tokenizer.fsq_levels=\[1024, 1024, 1024, 1024\] needs .*; lower "
                                          "tokenizer.fsq_levels"):
        memory.check_codebook(config, CPU)
    with pytest.raises(ConfigError, match=r"vocabulary of 2199023255554 ids .* smaller codebook"):
        memory.check_vocabulary(transformer_small(codebook_size=2**40), CPU)


def test_the_memory_free_is_read_where_the_model_trains(monkeypatch, tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       8000 kB\nMemAvailable:   2000 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", meminfo)
    assert memory.available_bytes(CPU) == 2000 * 1024
    meminfo.write_text("MemTotal:       8000 kB\nMemFree:        1000 kB\n")  # an old kernel: not known
    assert memory.available_bytes(CPU) is None
    memory.check_codebook(TokenizerConfig(codebook_size=10**12), CPU)  # unknown: no refusal
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "none")  # not Linux
    assert memory.available_bytes(CPU) is None
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (5 * 2**30, 80 * 2**30))
    assert memory.available_bytes(torch.device("cuda", 0)) == 5 * 2**30
    with pytest.raises(ConfigError, match=r"needs 8.6 GB to train but 5 GB is free on cuda;"):  # alike on every GPU
        memory.check_vocabulary(transformer_medium(codebook_size=2**17), torch.device("cuda", 0))
    memory.check_vocabulary(transformer_medium(codebook_size=2**17), torch.device("cuda", 0), trained=False)  # frozen
    memory.check_vocabulary(transformer_medium(codebook_size=2**17), torch.device("cuda", 0), shards=2)  # FSDP


def test_fsdp_shards_what_the_check_counts(monkeypatch) -> None:
    from ivideogpt.train.config import TrainConfig

    monkeypatch.setattr(memory, "process_state", lambda: SimpleNamespace(num_processes=4))  # a launch of 4
    assert memory.sharded_over(TrainConfig(distributed="fsdp")) == 4
    assert memory.sharded_over(TrainConfig(distributed="ddp")) == 1  # every process holds everything
