"""Matplotlib figures as base64 PNG for a self-contained HTML report, and the ``<figure>`` that shows one."""

from __future__ import annotations

import base64
import html
import io
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any) -> str:
    """The figure as base64 PNG text (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def html_figure(pid: str, title: str, data: str | None) -> str:
    """A ``<figure>`` with the PNG inline, or nothing when there is no plot.

    >>> print(html_figure("x", "A & B", "AAAA").replace("><", ">\\n<"))
    <figure id="x">
    <figcaption>A &amp; B</figcaption>
    <img alt="A &amp; B" src="data:image/png;base64,AAAA">
    </figure>
    >>> html_figure("x", "t", None)
    ''
    """
    if not data:
        return ""
    t = html.escape(title)
    return (f'<figure id="{html.escape(pid)}"><figcaption>{t}</figcaption><img alt="{t}" '
            f'src="data:image/png;base64,{data}"></figure>')
