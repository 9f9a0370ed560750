"""Bad-input audit (issue 14): run every case of ``tests/bad_input_cases.py`` and classify it.

    .venv/bin/python -m benchmarks.bad_input_audit            # all cases; writes benchmarks/results/bad-input-audit.md
    .venv/bin/python -m benchmarks.bad_input_audit --item 9   # one item of the issue, nothing written
    .venv/bin/python -m benchmarks.bad_input_audit --only "too long" --no-write

Each case is classified as

- **clear error**: a ``PeHooksError`` subclass (the expected one) whose message names the fix (the
  case's phrase); for the CLI, exit code 2 and one line on stderr naming the fix, no traceback;
- **warns**: the call returned and warned with the expected ``PeHooksWarning`` subclass, whose
  message names the fix (the case's phrase, and words that say what to do): a valid but weak input
  (an eraser fitted on fewer tokens than the model's width) that is allowed, and said so;
- **correct result**: the call returned the exact right answer (the case's check passes);
- **unclear error**: any other exception (a traceback from inside torch / transformers /
  safetensors / TransformerLens is reported as such), a ``PeHooksError`` without the fix, a warning
  of the expected class without the fix, a CLI traceback or a multi-line message;
- **silent wrong result**: no error where one was due, no warning where one was due, or a wrong /
  degenerate result;

and, independently, **state left behind**: hooks still attached to any model (every forward and
pre-forward hook of every module, TransformerLens hook points included), a changed environment,
grad mode, default dtype, SIGINT handler, logger level (root, transformers, transformer_lens,
torch) or torch thread count, or a stray (hidden, half-written) folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

KINDS = ("clear error", "warns", "correct result", "unclear error", "silent wrong result")
# A message names the fix when it says what to do ("pass ...", "use ...", "shorten ...") or what a valid
# value is ("must be >= 1", "available: ...", "one of ...").
FIX_WORDS = re.compile(
    r"\b(use|pass|set|lower|shorten|give|fit|build|convert|choose|run|load|remove|install|tokeni[sz]e|call|add|"
    r"refit|drop|save|keep|clone|select|see|enable|leave|wrap|replace|erase|apply|check|re-encode|"
    r"must|needs?|expects?|known|one of)\b|available:|fitted:|e\.g\.",
    re.IGNORECASE,
)


@dataclass
class Outcome:
    case: Any
    kind: str
    detail: str
    leak: str
    seconds: float


def _module_hooks(model: Any) -> int:
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
    return n


def snapshot() -> dict[str, Any]:
    from tests import conftest

    state: dict[str, Any] = {
        f"hooks on {name}": (_module_hooks(m), conftest.hook_counts(m)) for name, m in conftest._models.items()
    }
    state["environment"] = dict(os.environ)
    state["grad mode"] = __import__("torch").is_grad_enabled()
    state["default dtype"] = __import__("torch").get_default_dtype()
    state["SIGINT handler"] = signal.getsignal(signal.SIGINT)
    state["working folder"] = os.getcwd()
    state["logger levels"] = {n: logging.getLogger(n).level for n in ("", "transformers", "transformer_lens", "torch")}
    state["torch threads"] = __import__("torch").get_num_threads()
    return state


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    changed = [k for k in after if k in before and after[k] != before[k]]
    return ", ".join(changed)


def _where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame, and whether it is inside a dependency."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    dep = "site-packages" in last.filename or "/lib/python" in last.filename
    short = last.filename.split("site-packages/")[-1] if dep else os.path.relpath(last.filename)
    return f"{'dependency ' if dep else ''}{short}:{last.lineno}"


def classify(c: Any) -> Outcome:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pe-hooks-audit-") as tmpdir:
        tmp = Path(tmpdir)
        before = snapshot()
        value: Any = None
        error: BaseException | None = None
        with warnings.catch_warnings(record=True) as seen, contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("always")
            try:
                value = c.call(tmp)
            except (Exception, SystemExit) as exc:
                error = exc
        seconds = time.perf_counter() - t0
        leak = _diff(before, snapshot())
        stray = [q.name for q in tmp.iterdir() if q.name.startswith(".")]
        if stray:
            leak = ", ".join(filter(None, [leak, f"stray {stray}"]))
        kind, detail, extra = _judge(c, value, error, seen)  # inside: a CLI check looks at the folder
        leak = ", ".join(filter(None, [leak, extra]))
    return Outcome(c, kind, detail, leak, seconds)


def _judge(c: Any, value: Any, error: BaseException | None, seen: list[Any]) -> tuple[str, str, str]:
    """(kind, detail, state left) of one case's outcome (``seen``: the warnings it gave)."""
    from pe_hooks.core.errors import PeHooksError
    from tests.bad_input_cases import Cli, CliRun, Raises, Result, Warns, check_cli

    exp = c.expect
    if error is not None:
        msg = " ".join(str(error).split())
        if isinstance(error, PeHooksError):
            if isinstance(exp, Raises) and isinstance(error, exp.error) and exp.fix in msg:
                if not FIX_WORDS.search(msg):
                    return "unclear error", f"names no fix: {msg}", ""
                return "clear error", f"{type(error).__name__}: {msg}", ""
            if isinstance(exp, Raises):
                return ("unclear error", f"{type(error).__name__} without {exp.fix!r} (want {exp.error.__name__}): {msg}", "")
            return "unclear error", f"refused a valid input: {type(error).__name__}: {msg}", ""
        return "unclear error", f"{type(error).__name__} at {_where(error)}: {msg[:200]}", ""
    if isinstance(exp, Cli):
        assert isinstance(value, CliRun)
        why = check_cli(value, exp.fix)
        if why is None:
            return "clear error", value.err.strip(), ""
        if why.startswith("exit code 0"):
            return "silent wrong result", "exit code 0", ""
        if why.startswith("wrote"):
            return "clear error", value.err.strip(), why
        return "unclear error", f"{why}: {value.err.strip()[:300]}", ""
    if isinstance(exp, Raises):
        return "silent wrong result", f"no error; returned {type(value).__name__}", ""
    if isinstance(exp, Warns):
        msgs = [" ".join(str(w.message).split()) for w in seen if issubclass(w.category, exp.warning)]
        named = [m for m in msgs if exp.fix in m and FIX_WORDS.search(m)]
        if named:
            return "warns", f"{exp.warning.__name__}: {named[0]}", ""
        if msgs:
            return "unclear error", f"{exp.warning.__name__} without {exp.fix!r}: {msgs[0]}", ""
        return "silent wrong result", f"no {exp.warning.__name__}; returned {type(value).__name__}", ""
    assert isinstance(exp, Result)
    try:
        exp.check(value)
    except AssertionError as exc:
        return "silent wrong result", f"wrong result: {str(exc)[:300]}", ""
    return "correct result", exp.what, ""


def preload() -> None:
    """Load every shared model before the first case, so state is compared against a loaded model."""
    import torch

    from tests.bad_input_cases import FAMILIES, M, nan_model, other

    for model in [nan_model(), *(m for f in FAMILIES for m in (M(f), other(f)))]:
        with torch.no_grad():  # the bridge registers a few module hooks of its own on the first forward
            model(torch.tensor([[5, 6, 7, 8]]))


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    """Counts per outcome, overall and per item (what ``--baseline`` compares with)."""
    from tests.bad_input_cases import ITEMS

    def count(sub: list[Outcome]) -> dict[str, int]:
        k = Counter(o.kind for o in sub)
        return {"cases": len(sub), **{kind: k[kind] for kind in KINDS}, "state left behind": sum(1 for o in sub if o.leak)}

    return {"all": count(outcomes), "items": {i: count([o for o in outcomes if o.case.item == i]) for i in ITEMS}}


def _headline(c: dict[str, int]) -> str:
    warns = f"{c.get('warns', 0)} warnings naming the fix, "
    return (f"{c['cases']} cases: {c['clear error']} clear errors naming the fix, {warns}{c['correct result']} exact "
            f"correct results, {c['unclear error']} unclear errors, {c['silent wrong result']} silent wrong or "
            f"degenerate results; {c['state left behind']} left state behind")


def report(outcomes: list[Outcome], command: str, seconds: float, baselines: list[dict[str, Any]] | None = None) -> str:
    """The markdown report; ``baselines``: JSON summaries of earlier runs (each item's "before" column
    comes from the first that has it)."""
    from tests.bad_input_cases import ITEMS

    lines = [
        "# Bad-input audit (issue 14)",
        "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}, {seconds:.0f} s). Cases: `tests/bad_input_cases.py` "
        "(the same table `tests/test_bad_input.py` runs); classifier: `benchmarks/bad_input_audit.py` (its docstring "
        "defines the classes: *clear* = the expected `PeHooksError` subclass with the case's phrase of the fix and a "
        "message that says what to do or what a valid value is; CLI: exit code 2, one line, no traceback, nothing "
        "written).",
        "",
        f"**{_headline(summary(outcomes)['all'])}.**",
        "",
    ]
    for baseline in baselines or []:
        lines += [
            f"Before ({baseline['label']}): {_headline(baseline['all'])}. (Judged by the same expectations: a "
            "`PeHooksError` whose wording was changed since, e.g. to add the fix, counts as unclear there.)",
            "",
        ]
    before_items: dict[str, Any] = {}
    for baseline in baselines or []:
        before_items = {**baseline["items"], **before_items}
    before = " (before)" if baselines else ""
    lines += [
        "| item | what | cases | clear error | warns | correct result | unclear | silent | state left |"
        + (" unclear / silent / state left, before |" if before else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if before else ""),
    ]
    for item, what in ITEMS.items():
        mine = [o for o in outcomes if o.case.item == item]
        if not mine:
            continue
        k = Counter(o.kind for o in mine)
        row = (f"| {item} | {what} | {len(mine)} | {k['clear error']} | {k['warns']} | {k['correct result']} | "
               f"{k['unclear error']} | {k['silent wrong result']} | {sum(1 for o in mine if o.leak)} |")
        if item in before_items:
            b = before_items[item]
            row += f" {b['unclear error']} / {b['silent wrong result']} / {b['state left behind']} |"
        lines.append(row)
    bad = [o for o in outcomes if o.kind in ("unclear error", "silent wrong result") or o.leak]
    lines += ["", "## Cases that are not a clear error, a warning naming the fix or the correct result", ""]
    lines += [f"- [{o.case.item}] `{o.case.id}`: {o.kind}{' + state left: ' + o.leak if o.leak else ''} — {o.detail}"
              for o in bad] or ["None."]
    lines += ["", "## Every case", "", "| item | case | outcome | s | message / check |", "|---|---|---|---|---|"]
    for o in outcomes:
        detail = o.detail.replace("|", "\\|")
        lines.append(f"| {o.case.item} | {o.case.id.replace('|', '/')} | {o.kind}{' (state left)' if o.leak else ''} | "
                     f"{o.seconds:.2f} | {detail[:160]} |")
    return "\n".join(lines) + "\n"


def _git_head() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                             cwd=Path(__file__).parent)
        return f"commit {out.stdout.strip()}" if out.returncode == 0 and out.stdout.strip() else "this checkout"
    except OSError:
        return "this checkout"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bad_input_audit", description=__doc__.split("\n")[0])
    ap.add_argument("--item", default=None, help="only this item of the issue (1..11, G, 23.1..23.P)")
    ap.add_argument("--only", default=None, help="only cases whose id contains this text")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bad-input-audit.md")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--label", default=None, help="how the JSON summary names this run (default: the git commit)")
    ap.add_argument("--baseline", type=Path, action="append", default=None,
                    help="a JSON summary written by an earlier run (e.g. on older code) to quote beside this one; "
                         "may be given more than once (each item's before column comes from the first that has it)")
    args = ap.parse_args(argv)
    import torch

    from tests.bad_input_cases import CASES

    torch.set_num_threads(args.threads)
    cases = [c for c in CASES if (args.item is None or c.item == args.item) and (args.only is None or args.only in c.id)]
    t0 = time.perf_counter()
    preload()
    outcomes = []
    for c in cases:
        o = classify(c)
        outcomes.append(o)
        flag = "" if o.kind in ("clear error", "warns", "correct result") and not o.leak else "  <--"
        print(f"[{c.item:>2}] {o.kind:<20} {o.seconds:5.2f}s  {c.id}{flag}", flush=True)
        if flag:
            print(f"       {o.detail[:400]}{' | state left: ' + o.leak if o.leak else ''}", flush=True)
    seconds = time.perf_counter() - t0
    counts = Counter(o.kind for o in outcomes)
    leaks = sum(1 for o in outcomes if o.leak)
    print(f"\n{len(outcomes)} cases: " + ", ".join(f"{counts[k]} {k}" for k in KINDS) + f"; {leaks} left state behind "
          f"({seconds:.0f} s)")
    if not args.no_write and args.item is None and args.only is None:
        command = "python -m benchmarks.bad_input_audit" + (f" --threads {args.threads}" if args.threads != 1 else "")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        baselines = [json.loads(b.read_text()) for b in args.baseline or []]
        command += "".join(f" --baseline {b}" for b in args.baseline or [])
        args.out.write_text(report(outcomes, command, seconds, baselines))
        data = summary(outcomes)
        data["label"] = args.label or f"{_git_head()}, {time.strftime('%Y-%m-%d')}"
        args.out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0 if counts["unclear error"] + counts["silent wrong result"] + leaks == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
