"""Scorers used by training and evaluation alike: refusal detector, preference-model and judge scorers."""
