"""Test helpers: tiny models, fakes, toy data, real servers, the kill harness."""
