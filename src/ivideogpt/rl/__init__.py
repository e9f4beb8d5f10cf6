"""Model-based RL with the world model as a drop-in environment: DrQ-v2 inside MBPO (Algorithm 1).

Public API: `DrQV2Config`, `DrQV2Agent` (drqv2), `SegmentReplay`, `TransitionBatch` (replay),
`MBPOConfig`, `MBPO` (mbpo), `ImaginationModel`, `WorldModelAdapter`, `imagine` (imagination),
`build_world_model`, `load_world_model` (world_models), `RLConfig`, `RLTrainer` (trainer).
Submodules are imported on use so that `import ivideogpt.rl` stays light.
"""
