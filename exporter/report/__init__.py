"""``python -m exporter report``: from a checkpoint to a deployment decision on this machine.

Every backend and precision this machine can run is exported, verified against PyTorch, timed and scored
on the same images, and the one recommendation is the fastest at batch 1 within an AP budget. Measuring
(:mod:`.measure`) returns a :class:`~.measure.DeploymentReport`; :mod:`.render` writes it as JSON,
Markdown and HTML with its plots; :mod:`.cli` is the command line over both.
"""

from exporter.report.combinations import Combination, plan_combinations
from exporter.report.measure import DeploymentReport, ReportOptions, Row, build_report
from exporter.report.pareto import pareto_front
from exporter.report.render import write_report

__all__ = [
    "Combination",
    "DeploymentReport",
    "ReportOptions",
    "Row",
    "build_report",
    "pareto_front",
    "plan_combinations",
    "write_report",
]
