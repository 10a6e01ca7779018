"""Constitutions: the schema (principles, hash, sampling, diff), layers (extends/remove), loading,
importers."""
