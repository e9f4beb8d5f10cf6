"""Simulator environments: data generators and RL wrappers."""
