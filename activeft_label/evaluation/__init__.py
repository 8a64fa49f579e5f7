"""Judging a selection: the linear-probe comparison of methods (:mod:`.probe`) and the 2-D map (:mod:`.plot`).

Used by ``activeft evaluate``, ``activeft select --plot`` and the benchmarks.
"""

from .plot import PLOT_SUFFIXES, PROJECTIONS, check_plottable, plot_selection, selection_figure
from .probe import Trial, linear_probe_accuracy, markdown_table, run_trials, summarize

__all__ = ["PLOT_SUFFIXES", "PROJECTIONS", "Trial", "check_plottable", "linear_probe_accuracy", "markdown_table",
           "plot_selection", "run_trials", "selection_figure", "summarize"]
