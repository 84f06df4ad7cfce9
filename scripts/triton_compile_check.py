"""Compile every Triton kernel for real GPUs, with no GPU: each kernel × each GPU autotune config × the constexpr
combinations (shape classes) the models produce × fp32/fp16/bf16, ahead of time through
``triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", cc, 32))``.

Fails (exit 1) on any compile error, on shared memory over the target's per-block limit, or on register spills
(cuobjdump's STACK/LOCAL bytes > 0; ``--spills report`` lists spills without failing). Prints a table (kernel, config, shape class, dtype, target, registers, spills,
shared bytes) and writes it to --out. What is compiled comes from levit_kernels.backends.triton.compile_cases
(MODULES: one line per kernel module); --module adds a module from elsewhere (the tests plant a bad kernel so).

Compiled kernels land in Triton's cache (TRITON_CACHE_DIR; --cache-dir), so a rerun with unchanged kernels only
reads it back. A compile is a few CPU seconds (fp32 ieee dots, expanded to FMAs, are the slowest), so the full
matrix takes a while cold; --quick compiles only the shape classes no other class covers (the largest tiles of
each kernel: a config that fits there fits the covered classes) in fp32 and bf16 only (fp16 tiles are bf16's size
and draw from the same list).

    python scripts/triton_compile_check.py --targets sm_80,sm_90 [--quick] [--jobs N] [--out FILE]
"""
from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Usable shared memory per block (opt-in dynamic maximum), bytes: A100 163 KiB, H100/H200 227 KiB.
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
DTYPES = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16"}
# tl.dot input precision per dtype, as _runtime.dot_precision picks it by default (fp32: exact, unless the caller
# enables TF32; fp16/bf16 ignore it).
PRECISION = {"fp32": "ieee", "fp16": "tf32", "bf16": "tf32"}
RESOURCE = re.compile(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")

_JOBS: list = []  # filled before the worker pool forks; workers get indices


def parse_targets(text: str) -> list[int]:
    targets = []
    for part in text.split(","):
        match = re.fullmatch(r"sm_(\d+)", part.strip())
        if not match or int(match.group(1)) not in SHARED_LIMIT:
            raise SystemExit(f"--targets: expected a comma-separated list of {', '.join(f'sm_{c}' for c in SHARED_LIMIT)}"
                             f", got {part!r}")
        targets.append(int(match.group(1)))
    return targets


def collect(modules: list[str], quick: bool) -> list:
    """Every CompileCase of ``modules`` (quick: only the classes no other class of the kernel covers, see
    compile_cases.mark_covered)."""
    cases = []
    for name in modules:
        module = importlib.import_module(name if "." in name else f"levit_kernels.backends.triton.{name}")
        cases += [case for case in module.compile_cases() if not (quick and case.covered)]
    return cases


def signature(fn, constexprs: dict, dtype: str) -> dict:
    from levit_kernels.backends.triton.compile_cases import FLOAT_ARGS

    return {arg: "constexpr" if arg in constexprs else f"*{DTYPES[dtype]}" if arg.endswith("_ptr")
            else "fp32" if arg in FLOAT_ARGS else "i32" for arg in fn.arg_names}


def resources(cubin: bytes) -> dict:
    """Registers, spill bytes (stack + local) and static shared memory of the kernel in ``cubin``, by cuobjdump."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    match = RESOURCE.search(out)
    if match is None:
        raise RuntimeError(f"cuobjdump printed no resource usage: {out.strip()[:200]}")
    reg, stack, _shared, local = map(int, match.groups())
    return {"registers": reg, "spills": stack + local}


def judge(row: dict) -> list[str]:
    """Why a compiled kernel cannot run on its target, or runs slowly there ([] when neither)."""
    problems = []
    if row["shared"] > SHARED_LIMIT[row["cc"]]:
        problems.append(f"shared memory {row['shared']} B > sm_{row['cc']} limit {SHARED_LIMIT[row['cc']]} B")
    if row["spills"] > 0:
        problems.append(f"{SPILLS}: {row['spills']} B of stack/local memory")
    return problems


SPILLS = "register spills"


def failures(row: dict, spills: str) -> list[str]:
    """The problems that fail the run: all of them, or with ``--spills report`` all but spills (which still show in
    the table and the summary)."""
    return [p for p in row["problems"] if spills == "fail" or not p.startswith(SPILLS)]


def compile_one(index: int) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    case, config, dtype, cc = _JOBS[index]
    fn = case.kernel
    while not isinstance(fn, triton.runtime.JITFunction):  # an Autotuner (or Heuristics) wraps the JITFunction
        fn = fn.fn
    constexprs = {**case.constexprs, **config.kwargs}
    if "PRECISION" in fn.arg_names:
        constexprs["PRECISION"] = PRECISION[dtype]
    row = {"kernel": fn.__name__, "config": config_label(config), "class": case.shape_class, "dtype": dtype,
           "cc": cc, "registers": None, "spills": None, "shared": None}
    started = time.process_time()
    try:
        compiled = triton.compile(ASTSource(fn, signature(fn, constexprs, dtype), constexprs),
                                  target=GPUTarget("cuda", cc, 32),
                                  options={"num_warps": config.num_warps, "num_stages": config.num_stages})
        row["shared"] = compiled.metadata.shared
        row.update(resources(compiled.asm["cubin"]))
        row["problems"] = judge(row)
    except Exception as exc:  # a compile error: the message's last line names it (earlier ones quote the source)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        row["problems"] = [f"compile error: {type(exc).__name__}" + (f": {lines[-1][:300]}" if lines else "")]
    row["cpu_s"] = time.process_time() - started
    return row


def config_label(config) -> str:
    tiles = " ".join(f"{k}={v}" for k, v in config.kwargs.items())
    return f"{tiles} w{config.num_warps} s{config.num_stages}"


def table(rows: list[dict]) -> str:
    head = "| kernel | config | shape class | dtype | target | registers | spills (B) | shared (B) | result |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        result = "; ".join(r["problems"]) or "ok"
        cells = [r["kernel"], r["config"], r["class"], r["dtype"], f"sm_{r['cc']}", r["registers"], r["spills"],
                 r["shared"], result]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="sm_80,sm_90", help="comma-separated: sm_80, sm_90")
    parser.add_argument("--dtypes", default=None, help="comma-separated of fp32, fp16, bf16 (default all; "
                                                       "--quick: fp32,bf16)")
    parser.add_argument("--quick", action="store_true", help="only the shape classes no other class covers")
    parser.add_argument("--module", action="append", default=[],
                        help="compile this module's compile_cases() instead of the backend's (repeatable)")
    parser.add_argument("--spills", choices=("fail", "report"), default="fail",
                        help="fail (default) or only report kernels that spill registers; compile errors and shared "
                             "memory over the limit fail either way")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache-dir", default=None, help="Triton cache for the compiled kernels (TRITON_CACHE_DIR)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "triton_compile_check.md"))
    args = parser.parse_args(argv)
    targets = parse_targets(args.targets)
    dtypes = (args.dtypes or ("fp32,bf16" if args.quick else "fp32,fp16,bf16")).split(",")
    for dtype in dtypes:
        if dtype not in DTYPES:
            parser.error(f"--dtypes: expected fp32, fp16 or bf16, got {dtype!r}")
    if args.cache_dir:
        os.environ["TRITON_CACHE_DIR"] = args.cache_dir
    os.environ.pop("TRITON_INTERPRET", None)  # compile the GPU kernels, not the interpreter's
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton ≥ 3.9 warns when unset; 1 is the runtime's
    sys.path.insert(0, ROOT)
    from levit_kernels.backends.triton.compile_cases import MODULES

    cases = collect(args.module or list(MODULES), args.quick)
    _JOBS[:] = [(case, config, dtype, cc) for case in cases for dtype in dtypes for config in case.configs_for(dtype)
                for cc in targets]
    started = time.time()
    print(f"triton_compile_check: {len(_JOBS)} compiles ({len(cases)} kernel × shape-class cases, dtypes "
          f"{','.join(dtypes)}, targets {','.join(f'sm_{c}' for c in targets)}, {args.jobs} jobs)", flush=True)
    rows = []
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        for row in pool.imap(compile_one, range(len(_JOBS))):  # progress: one line per compile, in table order
            rows.append(row)
            print(f"[{len(rows)}/{len(_JOBS)}] {row['kernel']} [{row['config']}] {row['class']} {row['dtype']} "
                  f"sm_{row['cc']}: {'; '.join(row['problems']) or 'ok'}", flush=True)
    text = table(rows)
    print(text)
    failed = [r for r in rows if failures(r, args.spills)]
    spilled = sum(any(p.startswith(SPILLS) for p in r["problems"]) for r in rows)
    summary = (f"{len(rows)} compiles in {time.time() - started:.0f} s ({sum(r['cpu_s'] for r in rows):.0f} CPU-s in "
               f"the workers): {len(failed)} failed, {spilled} spill registers"
               + (" (reported, not failed: --spills report)" if args.spills == "report" else ""))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(f"# Triton ahead-of-time compile check\n\n`python scripts/triton_compile_check.py "
                f"{' '.join(argv if argv is not None else sys.argv[1:])}` (triton "
                f"{__import__('triton').__version__}): {summary}\n\n{text}")
    print(f"triton_compile_check: {summary}; table written to {args.out}")
    for r in rows:
        if r["problems"]:
            print(f"{'FAILED' if r in failed else 'SPILLS'} {r['kernel']} [{r['config']}] {r['class']} {r['dtype']} "
                  f"sm_{r['cc']}: {'; '.join(r['problems'])}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
