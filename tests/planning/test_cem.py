"""CEM planner: finds a known optimum, batches candidates, respects bounds, is reproducible."""

import re

import pytest
import torch

from ivideogpt.planning.cem import CEMConfig, CEMPlanner, Dynamics, colored_noise
from ivideogpt.planning.objectives import RewardObjective


class LinearToy:
    """x_{t+1} = x_t + a_t; reward = -|x_{t+1} - target_t|^2. Counts calls and batch sizes."""

    def __init__(self, target: torch.Tensor) -> None:
        self.target = target  # (H, A)
        self.batch_sizes: list[int] = []

    def rollout(self, state: torch.Tensor, actions: torch.Tensor) -> tuple[None, torch.Tensor]:
        self.batch_sizes.append(actions.shape[0])
        positions = state + actions.cumsum(dim=1)  # (N, H, A)
        return None, -(positions - self.target).square().sum(-1)


def make(target: torch.Tensor, **overrides) -> tuple[CEMPlanner, LinearToy]:
    settings = dict(horizon=target.shape[0], candidates=256, elites=16, iterations=8, action_dim=target.shape[1],
                    action_low=(-1.0,), action_high=(1.0,), init_std=0.5, min_std=0.001, momentum=0.0)
    settings.update(overrides)
    toy = LinearToy(target)
    return CEMPlanner(toy, RewardObjective(), CEMConfig(**settings)), toy


def test_finds_optimum_of_quadratic_toy() -> None:
    optimum = torch.tensor([[0.3, -0.2], [0.1, 0.5], [-0.4, 0.2], [0.2, -0.1]])  # (H, A)
    target = optimum.cumsum(0)  # the action sequence that tracks it exactly is `optimum`
    planner, toy = make(target)
    result = planner.plan(torch.zeros(2))
    assert isinstance(toy, Dynamics)
    error = (result.actions - optimum).abs().max().item()
    assert error < 0.05, error
    assert result.history[-1]["best"] > result.history[0]["best"]
    assert result.execute.shape == (1, 2) and torch.equal(result.execute, result.actions[:1])


def test_all_candidates_in_one_batched_call_per_iteration() -> None:
    planner, toy = make(torch.zeros(3, 2), candidates=37, elites=5, iterations=4)
    planner.plan(torch.zeros(2))
    assert toy.batch_sizes == [37] * 4


def test_actions_respect_bounds() -> None:
    target = torch.full((3, 2), 10.0)  # far outside reach: the optimum presses against the upper bound
    toy = LinearToy(target)
    seen: list[torch.Tensor] = []
    original = toy.rollout

    def spy(state, actions):
        seen.append(actions.clone())
        return original(state, actions)

    toy.rollout = spy
    cfg = CEMConfig(horizon=3, candidates=64, elites=8, iterations=6, action_low=(-0.5, 0.0), action_high=(0.25, 1.0),
                    init_std=1.0)
    result = CEMPlanner(toy, RewardObjective(), cfg).plan(torch.zeros(2))
    low, high = torch.tensor([-0.5, 0.0]), torch.tensor([0.25, 1.0])
    for actions in [*seen, result.actions, result.best_actions]:
        assert (actions >= low).all() and (actions <= high).all()
    assert torch.allclose(result.actions[0], high, atol=0.05)


def test_deterministic_from_seed() -> None:
    target = torch.randn(4, 2)
    a = make(target, seed=3)[0].plan(torch.zeros(2)).actions
    b = make(target, seed=3)[0].plan(torch.zeros(2)).actions
    c = make(target, seed=4)[0].plan(torch.zeros(2)).actions
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_warm_start_shifts_previous_mean() -> None:
    planner, _ = make(torch.zeros(4, 2), iterations=1, execute_steps=2, momentum=0.0)
    first = planner.plan(torch.zeros(2))
    assert first.execute.shape == (2, 2)
    expected = torch.cat([first.actions[2:], first.actions[-1:].expand(2, -1)])
    assert torch.equal(planner._warm_mean, expected)
    planner.reset()
    assert planner._warm_mean is None


def test_init_mean_and_execute_best() -> None:
    planner, _ = make(torch.zeros(3, 2), iterations=1, init_std=0.01, min_std=0.0, execute="best")
    result = planner.plan(torch.zeros(2), init_mean=torch.tensor([0.9, -0.9]))
    assert torch.equal(result.actions, result.best_actions)
    assert (result.actions - torch.tensor([0.9, -0.9])).abs().max() < 0.1


def test_keep_elites_makes_best_score_monotone_on_deterministic_dynamics() -> None:
    planner, toy = make(torch.randn(5, 2), candidates=16, elites=4, keep_elites=4, iterations=6, momentum=0.5)
    best = [h["best"] for h in planner.plan(torch.zeros(2)).history]
    assert best == sorted(best) and toy.batch_sizes == [16] * 6


def test_increments_start_at_the_anchor_and_find_a_path() -> None:
    target = torch.tensor([[0.2, 0.1], [0.4, 0.2], [0.6, 0.3]])  # a drifting path of positions, rewarded as actions
    seen: list[torch.Tensor] = []

    class PathToy:
        def rollout(self, state, actions):
            seen.append(actions.clone())
            return None, -(actions - target).square().sum(-1)

    anchor = torch.tensor([0.0, 0.0])
    cfg = CEMConfig(horizon=3, candidates=256, elites=16, iterations=8, action_low=(-1.0,), action_high=(1.0,),
                    init_std=0.05, min_std=0.001, momentum=0.0, increments=True, execute_steps=1)
    planner = CEMPlanner(PathToy(), RewardObjective(), cfg)
    result = planner.plan(None, init_mean=anchor)
    first_steps = seen[0][:, 0]  # one increment of std 0.05 away from the anchor
    assert (first_steps - anchor).abs().max() < 0.3
    assert (result.actions - target).abs().max() < 0.05
    # The warm start keeps the unexecuted increments and holds the last action (a zero increment).
    increments = torch.diff(result.actions, dim=0, prepend=anchor[None])
    assert torch.allclose(planner._warm_mean, torch.cat([increments[1:], torch.zeros(1, 2)]))


def test_increments_respect_bounds_and_refit_on_what_was_run() -> None:
    planner, toy = make(torch.full((4, 2), 10.0), increments=True, init_std=1.0, iterations=4)
    seen: list[torch.Tensor] = []
    original = toy.rollout
    toy.rollout = lambda state, actions: (seen.append(actions.clone()), original(state, actions))[1]
    result = planner.plan(torch.zeros(2), init_mean=torch.zeros(2))
    for actions in [*seen, result.actions]:
        assert (actions >= -1).all() and (actions <= 1).all()
    assert torch.allclose(result.actions, torch.ones(4, 2), atol=0.05)


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("length", [1, 6, 7])
def test_colored_noise_has_unit_variance_and_the_asked_smoothness(beta: float, length: int) -> None:
    noise = colored_noise(beta, (20000, length, 2), torch.Generator().manual_seed(0))
    assert noise.shape == (20000, length, 2)
    assert torch.allclose(noise.var(0), torch.ones(length, 2), atol=0.05)
    if length > 2:
        neighbours = torch.corrcoef(torch.stack([noise[:, :-1].flatten(), noise[:, 1:].flatten()]))[0, 1]
        assert (neighbours < 0.03) if beta == 0 else (neighbours > 0.2 * beta), float(neighbours)


def test_colored_noise_is_seeded() -> None:
    a = colored_noise(2.0, (8, 6, 2), torch.Generator().manual_seed(1))
    b = colored_noise(2.0, (8, 6, 2), torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


@pytest.mark.parametrize("field,value", [("noise_beta", -1.0), ("elites", 100), ("horizon", 0), ("momentum", 1.0), ("execute_steps", 9),
                                         ("action_low", (1.0,)), ("action_high", (1.0, 2.0, 3.0)), ("execute", "x"),
                                         ("min_std", 0.9), ("keep_elites", 9)])
def test_config_validation_names_the_field(field: str, value) -> None:
    with pytest.raises(ValueError, match=field):
        CEMConfig(**{field: value})


def test_an_init_mean_of_another_shape_is_refused_with_the_expected_one() -> None:
    planner, _ = make(torch.zeros(3, 2), iterations=1)
    for wrong in (torch.zeros(3), torch.zeros(2, 2)):
        expected = r"init_mean must be \(2,\) \(A,\) or \(3, 2\) \(H, A\), got " + re.escape(str(tuple(wrong.shape)))
        with pytest.raises(ValueError, match=expected):
            planner.plan(torch.zeros(2), init_mean=wrong)
    assert planner.plan(torch.zeros(2), init_mean=torch.zeros(3, 2)).actions.shape == (3, 2)
