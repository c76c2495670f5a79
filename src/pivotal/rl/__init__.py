"""Reinforcement learning: a Gymnasium trading environment on the simulator, and the DQN agent."""
