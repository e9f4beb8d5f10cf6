"""Episode summaries: means, and the spread of the coverage gain across episodes."""

import numpy as np
import pytest

from ivideogpt.planning.loop import EpisodeResult, summarize


def episode(initial: float, final: float, success: bool = False) -> EpisodeResult:
    return EpisodeResult(controller="c", success=success, initial_coverage=initial, final_coverage=final,
                         max_coverage=max(initial, final), total_reward=final, final_reward=final, steps=3,
                         seconds=0.1, real=np.zeros((4, 2, 2, 3), np.uint8))


def test_summary_reports_gain_and_its_spread() -> None:
    summary = summarize([episode(0.1, 0.5, True), episode(0.2, 0.2), episode(0.0, 0.2)])
    assert summary["episodes"] == 3 and summary["success_rate"] == pytest.approx(1 / 3)
    assert summary["coverage_gain"] == pytest.approx(0.2)
    assert summary["coverage_gain_std"] == pytest.approx(np.std([0.4, 0.0, 0.2]))
    assert summarize([]) == {}
