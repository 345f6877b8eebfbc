"""Benchmarks: our cores against the library production uses, in the same run, as ratios.

``python -m companion.bench`` (``make bench``) writes ``bench/results.json`` and a readable
``bench/results.md``. Every record names what was measured (dotted, e.g.
``losses.bce_with_logits.speed_ratio_vs_torch``), our number, the reference number and library,
the unit, the ratio (oriented so that higher is better for ours), the goal, the parameters and
the machine. Absolute times on shared machines are noisy; ratios measured back to back are not.
Tests assert correctness; this module only measures.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import losses, numerics, optim


@dataclass
class Record:
    name: str
    ours: float
    reference: float
    reference_name: str
    unit: str
    ratio: float
    goal: str
    params: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)


def machine() -> dict:
    """CPU model, cores and library versions: what a ratio was measured on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy

    return {"cpu": cpu, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__}


def seconds(fn: Callable[[], object], repeat: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed_record(name: str, ours: Callable, reference: Callable, reference_name: str, goal: str, params: dict,
                 repeat: int) -> Record:
    """Time both functions alternately and report throughput as calls per second."""
    t_ours = seconds(ours, repeat)
    t_ref = seconds(reference, repeat)
    return Record(name, 1 / t_ours, 1 / t_ref, reference_name, "calls/s", t_ref / t_ours, goal, params)


def _fwd_bwd(loss_fn, *inputs):
    leaf = inputs[0].detach().requires_grad_()

    def run():
        loss_fn(leaf, *inputs[1:]).backward()
        leaf.grad = None

    return run


def fundamentals(smoke: bool) -> list[Record]:
    """Part I: losses, the AdamW step and the stable softmax against PyTorch."""
    g = torch.Generator().manual_seed(0)
    n = 100_000 if smoke else 2_000_000
    logits, targets = torch.randn(n, generator=g), torch.randint(0, 2, (n,), generator=g).float()
    b, k = (512, 1000) if smoke else (4096, 1000)
    class_logits, classes = torch.randn(b, k, generator=g), torch.randint(0, k, (b,), generator=g)
    p = torch.randn(1_000_000 if smoke else 10_000_000, generator=g)
    grad = torch.randn_like(p)
    repeat = 3 if smoke else 9
    goal = ">= 0.5 (within 2x of the fused library kernel)"

    ours_state, ref_param = {}, torch.nn.Parameter(p.clone())
    ref_opt = torch.optim.AdamW([ref_param], lr=1e-3, weight_decay=0.01)
    ref_param.grad = grad.clone()
    ours_p = p.clone()

    jobs = [
        ("losses.bce_with_logits.speed_ratio_vs_torch", _fwd_bwd(losses.bce_with_logits, logits, targets),
         _fwd_bwd(F.binary_cross_entropy_with_logits, logits, targets), "torch.nn.functional.binary_cross_entropy_with_logits",
         {"n": n, "pass": "forward+backward"}),
        ("losses.cross_entropy.speed_ratio_vs_torch", _fwd_bwd(losses.cross_entropy, class_logits, classes),
         _fwd_bwd(F.cross_entropy, class_logits, classes), "torch.nn.functional.cross_entropy",
         {"batch": b, "classes": k, "pass": "forward+backward"}),
        ("numerics.softmax_stable.speed_ratio_vs_torch", lambda: numerics.softmax_stable(class_logits),
         lambda: torch.softmax(class_logits, -1), "torch.softmax", {"shape": [b, k]}),
        ("optim.adamw_step.speed_ratio_vs_torch",
         lambda: optim.adamw_step(ours_p, grad, ours_state, lr=1e-3, weight_decay=0.01), ref_opt.step,
         "torch.optim.AdamW (foreach)", {"params": p.numel()}),
    ]
    return [speed_record(name, ours, ref, ref_name, goal, params, repeat)
            for name, ours, ref, ref_name, params in tqdm(jobs, desc="bench: fundamentals")]


SUITES = {"fundamentals": fundamentals}


def to_markdown(records: list[Record]) -> str:
    lines = ["# Benchmark results", "", f"Machine: {records[0].machine if records else machine()}", "",
             "| benchmark | ours | reference | unit | ratio (higher is better for ours) | goal |",
             "|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| `{r.name}` | {r.ours:.4g} | {r.reference:.4g} ({r.reference_name}) | {r.unit} | "
                     f"{r.ratio:.2f} | {r.goal} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for checking that the suite runs")
    parser.add_argument("--suite", choices=sorted(SUITES), action="append", help="default: all suites")
    parser.add_argument("--out", type=Path, default=Path("bench"))
    args = parser.parse_args(argv)
    info = machine()
    records = []
    for suite in args.suite or sorted(SUITES):
        for record in SUITES[suite](args.smoke):
            record.machine = info
            records.append(record)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps([asdict(r) for r in records], indent=2))
    (args.out / "results.md").write_text(to_markdown(records))
    print(to_markdown(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
