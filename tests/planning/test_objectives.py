"""Planning objectives: predicted-reward sums and goal-image distances."""

import pytest
import torch

from ivideogpt.planning.objectives import GoalImageObjective, RewardObjective, make_objective


def test_reward_objective_sums_with_discount() -> None:
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 3.0]])
    assert torch.allclose(RewardObjective()(None, rewards), torch.tensor([3.0, 3.0]))
    assert torch.allclose(RewardObjective(discount=0.5)(None, rewards), torch.tensor([1.75, 0.75]))
    with pytest.raises(ValueError, match="rewards"):
        RewardObjective()(torch.zeros(2, 3, 3, 4, 4), None)


def test_goal_objective_prefers_frames_closer_to_goal() -> None:
    goal = torch.ones(3, 8, 8)
    frames = torch.stack([torch.full((4, 3, 8, 8), v) for v in (-1.0, 0.0, 0.9)])  # (N=3, H=4, 3, 8, 8)
    scores = GoalImageObjective(goal)(frames, None)
    assert scores.shape == (3,) and scores.argmax() == 2 and torch.isclose(scores[0], torch.tensor(-4.0))
    # final_only looks at the last frame: a trajectory that ends at the goal wins even if it starts far.
    late = torch.cat([torch.full((1, 3, 3, 8, 8), -1.0), torch.ones(1, 1, 3, 8, 8)], dim=1)
    early = torch.cat([torch.ones(1, 3, 3, 8, 8), torch.full((1, 1, 3, 8, 8), -0.5)], dim=1)
    both = torch.cat([late, early])
    assert GoalImageObjective(goal, final_only=True)(both, None).argmax() == 0
    assert GoalImageObjective(goal)(both, None).argmax() == 1


def test_goal_objective_adds_perceptual_term() -> None:
    calls: list[int] = []

    def fake_lpips(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return (x - y).abs().mean(dim=(1, 2, 3))

    goal = torch.zeros(3, 4, 4)
    frames = torch.rand(5, 2, 3, 4, 4)
    objective = GoalImageObjective(goal, pixel_weight=0.0, perceptual=fake_lpips, chunk=4)
    expected = -(frames - goal).abs().mean(dim=(2, 3, 4)).mean(1)
    assert torch.allclose(objective(frames, None), expected)
    assert calls == [4, 4, 2]  # (N*H=10) images in chunks


def test_goal_objective_with_lpips_module_random_trunk() -> None:
    perceptual = pytest.importorskip("ivideogpt.perceptual")
    try:
        lpips = perceptual.LPIPS(perceptual.VGG16Features())
    except FileNotFoundError:
        pytest.skip("lpips linear weights not installed")
    goal = torch.zeros(3, 16, 16)
    scores = GoalImageObjective(goal, perceptual=lpips)(torch.rand(2, 1, 3, 16, 16) * 2 - 1, None)
    assert scores.shape == (2,) and torch.isfinite(scores).all()


def test_make_objective_selects_by_name() -> None:
    assert isinstance(make_objective("reward"), RewardObjective)
    goal = make_objective("goal", goal=torch.zeros(3, 4, 4))
    assert isinstance(goal, GoalImageObjective) and goal.needs_frames
    with pytest.raises(ValueError, match="unknown objective"):
        make_objective("nope")
    with pytest.raises(ValueError, match="goal image"):
        make_objective("goal")


def test_make_objective_goal_metrics(tmp_path) -> None:
    goal = torch.zeros(3, 4, 4)
    assert make_objective("goal", goal=goal, goal_metric="pixel").perceptual is None
    with pytest.raises(FileNotFoundError, match="VGG16 weights for LPIPS not found"):
        make_objective("goal", goal=goal, goal_metric="lpips", lpips_path=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="unknown goal metric"):
        make_objective("goal", goal=goal, goal_metric="ssim")


def test_make_objective_lpips_from_a_local_file(tmp_path) -> None:
    perceptual = pytest.importorskip("ivideogpt.perceptual")
    try:
        perceptual.lpips_linear_weights_path()
    except FileNotFoundError:
        pytest.skip("lpips linear weights not installed")
    torch.manual_seed(0)
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in perceptual.VGG16Features().features.state_dict().items()}, path)
    lpips_only = make_objective("goal", goal=torch.zeros(3, 16, 16), goal_metric="lpips", lpips_path=str(path))
    both = make_objective("goal", goal=torch.zeros(3, 16, 16), goal_metric="pixel+lpips", lpips_path=str(path))
    assert lpips_only.pixel_weight == 0 and both.pixel_weight == 1 and both.perceptual is not None
    frames = torch.rand(2, 1, 3, 16, 16) * 2 - 1
    pixel = (frames ** 2).mean(dim=(1, 2, 3, 4))
    torch.testing.assert_close(both(frames, None), lpips_only(frames, None) - pixel)
