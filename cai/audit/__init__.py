"""Audits of the toolkit's automatic judgements against human labels."""
