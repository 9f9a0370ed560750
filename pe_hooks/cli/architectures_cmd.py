"""``pe-hooks architectures``: measure what pe-hooks does with every TransformerLens 4.3 architecture.

Each name runs in its own process with a time limit (a build that hangs or crashes costs one row,
not the table): built tiny and offline (``models.tiny.build_arch``), inspected (``SchemeError`` =
refused, with its reason), and every verb that applies checked against the HF model edited by hand
(``cli.arch_check``). ``--out docs/architectures.md`` writes the table (``sites.coverage.render``).
Also callable from Python: ``pe_hooks.architectures(out=...)``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pe_hooks.sites.coverage import FAILED, NOT_BUILT, REFUSED, SUPPORTED, CoverageRow, counts, render

#: rotary scaling variants measured beside the TL names (``NAME+VARIANT``, see models.tiny.ROPE_VARIANTS)
VARIANTS = ("LlamaForCausalLM+llama3", "LlamaForCausalLM+yarn", "LlamaForCausalLM+linear", "LlamaForCausalLM+dynamic",
            "FalconForCausalLM+alibi")
#: names the fast test suite checks (tests/test_architectures.py); every other buildable one: the slow sweep
FAST_TESTED = (
    "LlamaForCausalLM+yarn", "Qwen3ForCausalLM", "Phi3ForCausalLM", "PhiForCausalLM",
    "StableLmForCausalLM", "CohereForCausalLM", "GlmForCausalLM", "Cohere2ForCausalLM", "SmolLM3ForCausalLM",
    "GptOssForCausalLM", "DeepseekV3ForCausalLM", "Qwen3_5ForCausalLM",
)
TEST_FILE = "tests/test_architectures.py"
#: names the fast suite checks in the per-scheme files of issue 25: name -> test file::test
SCHEME_TESTED: dict[str, str] = {
    **{n: "tests/test_learned_offsets.py::test_table_verbs_vs_hf_rows_edited" for n in (
        "OPTForCausalLM", "RobertaForMaskedLM", "GPTNeoForCausalLM", "GPTBigCodeForCausalLM", "OpenAIGPTLMHeadModel")},
    **{n: "tests/test_encoder_decoder_tables.py::test_both_tables_vs_hf_rows_edited" for n in (
        "BartForConditionalGeneration", "MBartForConditionalGeneration", "BlenderbotForConditionalGeneration",
        "LEDForConditionalGeneration", "M2M100ForConditionalGeneration", "PegasusForConditionalGeneration", "MarianMTModel")},
    **{n: "tests/test_relative_bias.py::test_relative_verbs_vs_hf_bias_edited" for n in (
        "T5ForConditionalGeneration", "MT5ForConditionalGeneration", "LongT5ForConditionalGeneration",
        "SwitchTransformersForConditionalGeneration")},
    **{n: "tests/test_alibi_families.py::test_alibi_verbs_vs_hf_builder_patched" for n in ("MptForCausalLM", "BloomForCausalLM")},
}


def tl_names() -> list[str]:
    """Every architecture name TransformerLens lists (``SUPPORTED_ARCHITECTURES``)."""
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    return sorted(SUPPORTED_ARCHITECTURES)


def _evidence(name: str) -> str:
    if name in SCHEME_TESTED:
        return f"{SCHEME_TESTED[name]}[{name}]"
    test = "test_verbs_vs_hf" if name in FAST_TESTED else "test_every_architecture (slow)"
    return f"{TEST_FILE}::{test}[{name}]"


def measure(name: str) -> CoverageRow:
    """One row, measured in this process (see the module doc)."""
    import warnings

    from pe_hooks.cli.arch_check import build_pair, passed, reference_check
    from pe_hooks.core.errors import SchemeError
    from pe_hooks.models.tiny import ArchBuildError
    from pe_hooks.sites import inspect
    from pe_hooks.sites.facts import model_facts
    from pe_hooks.sites.inspect import scheme_of

    warnings.simplefilter("ignore")
    try:
        g, ref = build_pair(name)
    except ArchBuildError as exc:
        return CoverageRow(name, NOT_BUILT, reason=str(exc))
    except Exception as exc:  # the bridge would not boot it
        return CoverageRow(name, NOT_BUILT, reason=f"bridge boot failed: {type(exc).__name__}: {exc}"[:200])
    try:
        s = inspect(g)
    except SchemeError as exc:  # not even its residual hooks fire
        why = model_facts(g).error
        if why:  # the tiny build does not run
            return CoverageRow(name, NOT_BUILT, scheme=scheme_of(g).value, reason=f"the tiny build's forward fails: {why}"[:240])
        return CoverageRow(name, REFUSED, scheme=scheme_of(g).value, reason=str(exc).split(": ", 1)[-1])
    if s.refused:
        return CoverageRow(name, REFUSED, scheme=s.scheme.value, family=s.family.name, reason=s.refused.split(": ", 1)[-1])
    layout = "-"
    if s.rotary_layout is not None:
        rot = "all layers" if len(s.rotary_layers) == s.n_layers else f"layers {list(s.rotary_layers)}"
        layout = f"{s.rotary_layout.value}; width {s.rotary_dim} of {s.d_head}; {rot}; {s.rope_type}"
    base = CoverageRow(name, SUPPORTED, scheme=s.scheme.value, family=s.family.name, layout=layout)
    try:
        result = reference_check(name, pair=(g, ref))
    except Exception as exc:
        return CoverageRow(**{**base.to_json(), "status": FAILED, "reason": f"check raised {type(exc).__name__}: {exc}"[:200]})
    ok = passed(result)
    good = tuple(v for v, k in ok.items() if k and v != "bare")
    row = CoverageRow(**{**base.to_json(), "verbs": result, "passed": good, "evidence": _evidence(name)})
    if result and not ok.get("bare", True):
        return CoverageRow(**{**row.to_json(), "status": FAILED,
                              "reason": f"the bare bridge differs from HF by {result['bare']:.2g}: cannot verify"})
    bad = [v for v, k in ok.items() if not k]
    if bad:
        return CoverageRow(**{**row.to_json(), "status": FAILED, "reason": f"{', '.join(bad)} differ from the hand-edited HF model"})
    if not result:
        return CoverageRow(**{**row.to_json(), "evidence": "supported by description; no reference check for this scheme here"})
    return row


def _not_buildable(name: str) -> CoverageRow | None:
    """The row of a name with no tiny build here (no class, a multimodal wrapper, a config the
    tiny shape breaks), found from its config alone in this process; ``None``: it may build."""
    import warnings

    from pe_hooks.models.tiny import ArchBuildError, arch_config

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arch_config(name)
    except ArchBuildError as exc:
        return CoverageRow(name, NOT_BUILT, reason=str(exc))
    except Exception:  # left to the measuring process, which says what failed
        return None
    return None


def _in_subprocess(name: str, timeout: float) -> CoverageRow:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "pe_hooks.cli.architectures_cmd", name]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return CoverageRow(name, NOT_BUILT, reason=f"build and checks took over {timeout:g} s")
    for line in done.stdout.splitlines():
        if line.startswith("ROW "):
            return CoverageRow.from_json(json.loads(line[4:]))
    if done.returncode < 0:  # SIGKILL: most often the kernel's out-of-memory killer
        return CoverageRow(name, NOT_BUILT, reason=f"the measuring process was killed by signal {-done.returncode}"
                           + (" (out of memory?)" if done.returncode == -9 else ""))
    errors = [ln for ln in (done.stderr or "").strip().splitlines() if ln.strip() and "Warning" not in ln]
    tail = " ".join(errors[-1:])[:200]
    return CoverageRow(name, NOT_BUILT, reason=f"the measuring process died ({tail or f'exit code {done.returncode}'})")


def architectures(
    out: str | Path | None = None, *, names: Sequence[str] | None = None, jobs: int = 2, timeout: float = 300.0,
    variants: bool = True,
) -> list[CoverageRow]:
    """Measure every name (each in its own process, ``timeout`` seconds each, ``jobs`` at once);
    write ``out`` (Markdown) if given; return the rows."""
    todo = list(names) if names else tl_names() + (list(VARIANTS) if variants else [])
    known = {n: row for n in todo for row in [_not_buildable(n)] if row is not None}  # no process for these
    rest = [n for n in todo if n not in known]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        measured = dict(zip(rest, pool.map(lambda n: _in_subprocess(n, timeout), rest)))
    rows = [known.get(n) or measured[n] for n in todo]
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(render(rows, header=f"Measured {time.strftime('%Y-%m-%d')}."))
        tmp.replace(path)
    return rows


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from pe_hooks.cli.args import int_at_least

    p = sub.add_parser("architectures", help="measure every TransformerLens architecture and write the coverage table")
    p.add_argument("--out", default=None, help="write the Markdown table here (e.g. docs/architectures.md)")
    p.add_argument("--names", nargs="*", default=None, help="only these names (default: all TL names + scaling variants)")
    p.add_argument("--jobs", type=int_at_least(1), default=2, help="names measured at once (default 2)")
    p.add_argument("--timeout", type=int_at_least(10), default=300, help="seconds per name (default 300)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = architectures(args.out, names=args.names, jobs=args.jobs, timeout=args.timeout)
    for r in rows:
        print(f"{r.name:<45} {r.status:<22} {r.reason or ', '.join(r.passed)}"[:200])
    print(json.dumps(counts(rows)))
    return 0


if __name__ == "__main__":  # the per-name worker: one JSON row on stdout
    print("ROW " + json.dumps(measure(sys.argv[1]).to_json()), flush=True)
