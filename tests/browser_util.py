"""Shared by the browser tests: Debian's chromium driven by the playwright package."""

import shutil

import pytest


def chromium_path() -> str:
    """Debian's chromium, or skip the test with the reason it cannot run."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium; .ci/run installs it as root)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[dev]')")
    return path
