"""Benchmark the N-pair loss: facepad's NPairLoss, pytorch-metric-learning's NPairsLoss and
the naive form that builds an [N, N-1, D] tensor of negatives.

For each N (pairs) and D (embedding size) it reports forward + backward milliseconds, the
median of the timed repeats after warm-up. It also reports the peak memory that forward +
backward adds. On CUDA that is `torch.cuda.max_memory_allocated`. On CPU it is the peak
resident set size (`resource.getrusage`) of a fresh subprocess per case, minus its size
before the first full-size call. All three compute the plain loss, without a norm penalty,
on the same [2N, D] embeddings.

    python scripts/bench_loss.py                      # N in 64 256 1024, D in 128 512
    python scripts/bench_loss.py --pairs 256 --dims 128 --repeats 50

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

# The naive form's peak, in [N, N-1, D] float32 tensors: measured 2.0 on CPU at N=1024 (D=128 and 512)
# and at N=256, D=512. Smaller cases add a fixed overhead that this factor ignores.
NAIVE_PEAK_TENSORS = 2.5

METHODS = {
    "facepad": "facepad NPairLoss",
    "pml": "pytorch-metric-learning NPairsLoss",
    "naive": "naive [N, N-1, D]",
}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[64, 256, 1024], help="values of N (pairs per batch)")
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 512], help="values of D (embedding size)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice); 1 on a loaded machine"
    )
    parser.add_argument(
        "--naive-memory-fraction",
        type=float,
        default=0.5,
        help="skip a naive case whose estimated peak exceeds this fraction of the available memory",
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=20, help="maximum timed calls per case")
    parser.add_argument(
        "--min-repeats", type=int, default=3, help="timed calls per case even when --budget-s is used up"
    )
    parser.add_argument(
        "--budget-s", type=float, default=10.0, help="stop timing a case after this many seconds (min repeats done)"
    )
    # Internal: run one case and print its result as JSON.
    parser.add_argument("--case", nargs=3, metavar=("METHOD", "N", "D"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    if arguments.case:
        method, pairs, dim = arguments.case
        print(json.dumps(run_case(method, int(pairs), int(dim), arguments)))
        return

    results = []
    for pairs in arguments.pairs:
        for dim in arguments.dims:
            for method in arguments.methods:
                results.append(run_case_in_subprocess(method, pairs, dim, argv or sys.argv[1:]))
                print(f"done: {method} N={pairs} D={dim}", file=sys.stderr, flush=True)

    check_losses_agree(results)
    print(describe_machine(results[0].get("device", "cpu"), arguments.threads))
    print()
    print(format_table(results, arguments))


def run_case_in_subprocess(method: str, pairs: int, dim: int, argv: list[str]) -> dict:
    """Run one case in a fresh interpreter so that its peak memory is its own."""
    command = [sys.executable, os.path.abspath(__file__), *argv, "--case", method, str(pairs), str(dim)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        # An out-of-memory kill or error in one case is reported in the table, not fatal.
        error = (completed.stderr.strip().splitlines() or [f"exit status {completed.returncode}"])[-1]
        print(f"failed: {method} N={pairs} D={dim}: {error}", file=sys.stderr)
        return {"method": method, "pairs": pairs, "dim": dim, "error": error}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_case(method: str, pairs: int, dim: int, arguments: argparse.Namespace) -> dict:
    import torch

    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    device = select_device(arguments.device, torch)
    if method == "naive":
        needed = NAIVE_PEAK_TENSORS * pairs * (pairs - 1) * dim * 4
        available = available_memory_bytes(device, torch)
        if needed > arguments.naive_memory_fraction * available:
            return {
                "method": method,
                "pairs": pairs,
                "dim": dim,
                "device": str(device),
                "skipped": f"needs about {needed / 2**30:.0f} GiB, {available / 2**30:.0f} GiB available",
            }
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(2 * pairs, dim, generator=generator).to(device).requires_grad_()
    loss_function = make_loss_function(method, pairs, device)

    # One call on a tiny batch first, so that the memory baseline already includes what the
    # first call of any size allocates once (thread pools, kernels, allocator arenas).
    tiny_embeddings = torch.randn(8, dim, device=device, requires_grad=True)
    make_loss_function(method, 4, device)(tiny_embeddings).backward()

    def step() -> float:
        embeddings.grad = None
        loss = loss_function(embeddings)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return loss.item()

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    baseline_bytes = current_memory_bytes(device, torch)

    loss_value = step()
    for _ in range(arguments.warmup - 1):
        step()

    timings = []
    started = time.perf_counter()
    while len(timings) < arguments.repeats:
        if len(timings) >= arguments.min_repeats and time.perf_counter() - started > arguments.budget_s:
            break
        start = time.perf_counter()
        step()
        timings.append(time.perf_counter() - start)

    return {
        "method": method,
        "pairs": pairs,
        "dim": dim,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "milliseconds": 1000 * statistics.median(timings),
        "repeats": len(timings),
        "peak_mib": (peak_memory_bytes(device, torch) - baseline_bytes) / 2**20,
        "loss": loss_value,
    }


def make_loss_function(method: str, pairs: int, device):
    """Return a function of the [2N, D] embeddings (N anchors, then N positives)."""
    import torch
    import torch.nn.functional as F

    if method == "facepad":
        from facepad.losses import NPairLoss

        loss = NPairLoss(l2_weight=0.0)
        return lambda embeddings: loss(embeddings[:pairs], embeddings[pairs:])

    if method == "pml":
        from pytorch_metric_learning.distances import DotProductSimilarity
        from pytorch_metric_learning.losses import NPairsLoss

        loss = NPairsLoss(distance=DotProductSimilarity(normalize_embeddings=False))
        labels = torch.arange(pairs, device=device).repeat(2)
        return lambda embeddings: loss(embeddings, labels)

    # Row i lists every j != i: the columns of the negatives of anchor i.
    columns = torch.arange(pairs, device=device).repeat(pairs, 1)
    negative_columns = columns[~torch.eye(pairs, dtype=torch.bool, device=device)].view(pairs, pairs - 1)

    def naive_loss(embeddings):
        anchors, positives = embeddings[:pairs], embeddings[pairs:]
        negatives = positives[negative_columns]  # [N, N-1, D]
        differences = negatives - positives[:, None, :]
        scores = torch.einsum("nd,nkd->nk", anchors, differences)  # f_i . (p_j - p_i)
        # log(1 + sum_j exp(s_j)) = softplus(logsumexp_j s_j), computed stably.
        return F.softplus(torch.logsumexp(scores, dim=1)).mean()

    return naive_loss


def available_memory_bytes(device, torch) -> int:
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        return free_bytes
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    # Without /proc/meminfo (macOS), fall back to total physical memory.
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def select_device(preference: str, torch):
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def current_memory_bytes(device, torch) -> int:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return peak_memory_bytes(device, torch)


def peak_memory_bytes(device, torch) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def check_losses_agree(results: list[dict]) -> None:
    """Warn on stderr when the methods disagree on the loss of the same embeddings."""
    by_case: dict[tuple[int, int], list[dict]] = {}
    for result in results:
        if "loss" in result:
            by_case.setdefault((result["pairs"], result["dim"]), []).append(result)
    for (pairs, dim), case_results in by_case.items():
        values = [result["loss"] for result in case_results]
        if max(values) - min(values) > 1e-3 * max(1.0, abs(values[0])):
            print(f"warning: losses disagree at N={pairs} D={dim}: {values}", file=sys.stderr)


def describe_machine(device: str, threads: int | None) -> str:
    import torch

    if device.startswith("cuda"):
        hardware = torch.cuda.get_device_name(0)
    else:
        threads = threads or torch.get_num_threads()
        hardware = f"{cpu_model()}, {os.cpu_count()} CPUs, {threads} torch threads"
    try:
        from pytorch_metric_learning import __version__ as metric_learning_version
    except ImportError:
        metric_learning_version = "not installed"
    return (
        f"{datetime.date.today().isoformat()}, {hardware}, torch {torch.__version__}, "
        f"pytorch-metric-learning {metric_learning_version}, Python {platform.python_version()}"
    )


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_table(results: list[dict], arguments: argparse.Namespace) -> str:
    methods = arguments.methods
    header = ["N", "D"]
    for method in methods:
        header += [f"{METHODS[method]} ms", f"{METHODS[method]} peak MiB"]
    if "facepad" in methods and "pml" in methods:
        header.append("NPairsLoss / NPairLoss time")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    by_key = {(result["method"], result["pairs"], result["dim"]): result for result in results}
    for pairs in arguments.pairs:
        for dim in arguments.dims:
            row = [str(pairs), str(dim)]
            for method in methods:
                result = by_key[(method, pairs, dim)]
                if "error" in result:
                    row += ["failed", "failed"]
                elif "skipped" in result:
                    row += [f"skipped: {result['skipped']}", ""]
                else:
                    row += [f"{result['milliseconds']:.2f}", f"{result['peak_mib']:.1f}"]
            if "facepad" in methods and "pml" in methods:
                ours, theirs = by_key[("facepad", pairs, dim)], by_key[("pml", pairs, dim)]
                if "milliseconds" not in ours or "milliseconds" not in theirs:
                    row.append("n/a")
                else:
                    row.append(f"{theirs['milliseconds'] / ours['milliseconds']:.1f}x")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
