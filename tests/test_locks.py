"""The locks install anywhere PyPI is reachable, and the CPU fast path pins the same stack.

lock/X.txt is universal (any platform; torch from PyPI). lock/cpu/X.txt is X.txt's pins resolved for
Linux x86_64 / CPython 3.11 with the CPU wheel of the same torch release from a local wheel folder
(`make lock-cpu`). These tests read only the files: they need no network.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

LOCK = Path(__file__).resolve().parents[1] / "lock"
NAMES = ["tl4", "tl3", "bench"]
# what the CPU locks stand for: the machine the CPU wheel is built for
CPU_ENV = {
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
    "implementation_name": "cpython", "platform_python_implementation": "CPython",
    "python_version": "3.11", "python_full_version": "3.11.7", "os_name": "posix",
}
# the runtime of PyPI's CUDA build of torch, which the CPU build does not need
CUDA_ONLY = re.compile(r"^(nvidia-|cuda-|triton$)")


def pins(path: Path) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            out[req.name] = (spec.version, str(req.marker or ""))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_universal_lock_has_no_local_builds(name: str) -> None:
    """A local version label (torch==2.13.0+cpu) exists only in a wheel folder, never on PyPI."""
    for pkg, (version, _) in pins(LOCK / f"{name}.txt").items():
        assert Version(version).local is None, f"{name}.txt pins {pkg}=={version}: not on PyPI"


@pytest.mark.parametrize("name", NAMES)
def test_cpu_lock_pins_the_universal_stack(name: str) -> None:
    universal, cpu = pins(LOCK / f"{name}.txt"), pins(LOCK / "cpu" / f"{name}.txt")
    for pkg, (version, _) in cpu.items():
        assert pkg in universal, f"cpu/{name}.txt has {pkg}, which {name}.txt does not: run `make lock`"
        assert Version(version).public == universal[pkg][0], f"{pkg}: cpu/{name}.txt {version}, {name}.txt {universal[pkg][0]}"
    needed = {p for p, (_, m) in universal.items() if not m or Marker(m).evaluate(CPU_ENV)}
    missing = sorted(p for p in needed - set(cpu) if not CUDA_ONLY.match(p))
    assert not missing, f"cpu/{name}.txt lacks {missing}: run `make lock-cpu`"
    assert Version(cpu["torch"][0]).local == "cpu"


def test_ranges_exclude_the_transformers_that_break_transformer_lens_43() -> None:
    """pip install pe-hooks must not resolve to transformers >= 5.24 while TransformerLens 4.3 is the
    newest (its KV cache breaks: docs/upstream.md), and the lock must sit inside the ranges."""
    project = tomllib.loads((LOCK.parent / "pyproject.toml").read_text())["project"]
    reqs = {Requirement(r).name: Requirement(r) for r in project["dependencies"]}
    for bad in ["5.24.0", "5.25.0"]:
        assert not reqs["transformers"].specifier.contains(bad)
    for name in NAMES:
        locked = pins(LOCK / f"{name}.txt")
        for pkg, req in reqs.items():
            assert req.specifier.contains(locked[pkg][0], prereleases=True), f"{name}.txt: {pkg}=={locked[pkg][0]} outside {req}"
