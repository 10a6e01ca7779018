"""Base URLs: the round robin over several servers (the rest is in the module's doctests)."""

from __future__ import annotations

from cai.backends.openai.urls import base_url_for


def test_round_robin_assignment():
    urls = ["http://a/v1", "http://b/v1", "http://c/v1"]
    assert [base_url_for(k, urls) for k in range(7)] == [urls[k % 3] for k in range(7)]
    assert {base_url_for(k, urls[:1]) for k in range(4)} == {"http://a/v1"}
