"""`cai run`: recipes, the stage engine (skip unchanged, resume), the stage registry, hub staging."""
