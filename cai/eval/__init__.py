"""Evaluation: harm, over-refusal, helpfulness, reward-hacking probes, and reports."""
