"""The evaluation report: markdown table, self-contained HTML with its plots, and the metrics behind it."""

from __future__ import annotations

import base64
import re

from cai.eval.metrics import boilerplate, length_controlled_win_rate, rate
from cai.eval.report import to_html, to_markdown
from tests.helpers.data import summary


def test_markdown_has_one_column_per_model_and_every_figure():
    md = to_markdown(summary())
    assert "| figure | base | dpo |" in md
    assert "harmful compliance" in md and "40.0% [" in md and "20.0% [" in md
    assert "near chance" in md and "harmless" in md


def test_html_is_self_contained_with_three_plots():
    page = to_html(summary())
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 3
    for data in imgs:
        assert base64.b64decode(data).startswith(b"\x89PNG")
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    assert page.count("<td>") == 3 * page.count("<tr><td>")  # label + one cell per model


def test_plots_are_skipped_without_data():
    s = summary()
    s.curves, s.labeler_audit = {}, None
    assert len(re.findall(r"data:image/png", to_html(s))) == 1


def test_rate_and_lc_win_rate_examples():
    assert rate([True] * 3 + [False])["rate"] == 0.75
    assert abs(length_controlled_win_rate([0.5] * 4, [1, 2, 3, 4]) - 0.5) < 0.2
    assert boilerplate([])["n"] == 0
