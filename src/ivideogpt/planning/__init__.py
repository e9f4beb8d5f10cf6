"""Visual planning: CEM model-predictive control inside the world model (or the simulator oracle).

`CEMPlanner(dynamics, objective, CEMConfig(...)).plan(state)` optimises an action sequence with all
candidates rolled out in one batch per iteration; `WorldModelDynamics` plugs in the interactive
world model, `planning.pusht.PushTOracle` the real simulator; `planning.experiment` runs the
closed-loop comparison behind `ivideogpt plan`.
"""

from ivideogpt.planning.cem import CEMConfig, CEMPlanner, Dynamics, Objective, PlanResult
from ivideogpt.planning.dynamics import ModelContext, WorldModelDynamics, context_from_history
from ivideogpt.planning.objectives import GoalImageObjective, RewardObjective, make_objective

__all__ = [
    "CEMConfig", "CEMPlanner", "Dynamics", "GoalImageObjective", "ModelContext", "Objective", "PlanResult",
    "RewardObjective", "WorldModelDynamics", "context_from_history", "make_objective",
]
