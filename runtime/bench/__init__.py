"""Latency of one or more model files through the full pipeline: ``python -m runtime.bench``.

Models are timed alternately (A B A B ...) rather than one after the other, so a machine that slows down
half-way (thermal throttling, a neighbour's job) slows every model alike and the ratios still hold.
Each iteration is pre-process + inference + post-process (mask pasting included) on the same batch, with
device work synchronized before every clock read; medians and tail percentiles, not means, because a
single page fault or GC pause must not move the result.

On the CPU every model's time is also put against the compute floor (``runtime.compute_floor``): the FLOPs
its network executed on each batch over the float32 matmul rate measured in the same run, so the table says
how far each backend is from what the machine can do, not only from the other backends."""

from runtime.bench.cli import main
from runtime.bench.measure import BenchReport, BenchSettings, ModelResult, load_images, run_benchmark
from runtime.bench.render import format_batch_table, format_op_profiles, format_report, plot_report

__all__ = [
    "BenchReport",
    "BenchSettings",
    "ModelResult",
    "format_batch_table",
    "format_op_profiles",
    "format_report",
    "load_images",
    "main",
    "plot_report",
    "run_benchmark",
]
