"""cai's own PPO: config, math (GAE, clipped losses, KL), rollouts, the trainer and the run."""
