"""TL 3.x tests run only in the second environment (``make test-tl3``, transformer-lens<4)."""

from __future__ import annotations

import pytest

from pe_hooks.models.hooked import hooked_available

TL3_FAMILIES = ["tiny-gpt2", "tiny-neox", "tiny-llama", "tiny-bloom"]
_hooked: dict[str, object] = {}


def get_hooked(name: str) -> object:
    from pe_hooks import load_model

    if name not in _hooked:
        _hooked[name] = load_model(name, backend="hooked")
    return _hooked[name]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/tl3/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.tl3)
            if not hooked_available():
                item.add_marker(pytest.mark.skip(reason="needs transformer-lens<4 (make test-tl3)"))
