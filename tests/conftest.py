"""Shared fixtures: tiny random models built in seconds, and paths to shared data.

The tiny model is a 2-layer Llama with a byte-level BPE tokenizer trained here on
a few sentences and a ChatML chat template, saved to a temp dir once per session,
so every backend code path runs for real without the embedded model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.paths import SHARED_DATA
from tests.helpers.tiny import build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama with a chat template (path to a local model dir)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_model_no_template_dir(tmp_path_factory) -> Path:
    """The same tiny model without a chat template, for the error path."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model-nochat"), chat_template=None)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _close_run_log():
    """A command run in-process opens its run folder's cai.log: close it, so the next test's lines do not
    land in (and re-create) another test's folder."""
    yield
    from cai.cli.logs import log_to

    log_to(None)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Trainers in one test process must not inherit another test's AcceleratorState."""
    yield
    import sys

    if "accelerate.state" in sys.modules:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
