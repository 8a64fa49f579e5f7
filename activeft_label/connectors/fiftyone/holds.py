"""Holds on selection runs: which annotation queues were built from a run, so it is not replaced under them.

A hold is recorded by whoever queues a run's samples elsewhere (``activeft
sync push`` holds each round's run for its Label Studio project).  While a
run is held, selecting it again is refused unless the caller asks for it
(``replace``), and even then not when a later round was built on it; deleting
it is refused unless forced.  Holds live in ``dataset.info[HOLDS_KEY]``:
``{run name: [{"holder": key, "what": description, "later": [rounds]}]}``.
"""

from ...errors import InputError

#: Key of the holds in ``dataset.info``.
HOLDS_KEY = "activeft_run_holds"


def run_holds(dataset, run_name):
    """The holds on ``run_name``: a list of ``{"holder", "what", "later"}`` dicts (empty when none)."""
    return [dict(hold) for hold in (dataset.info.get(HOLDS_KEY) or {}).get(run_name, [])]


def set_holds(dataset, holder, runs):
    """Make ``holder``'s holds exactly ``runs`` and save the dataset.

    ``runs`` maps a run name to ``(what, later)``: a description of the
    queue built from it and the later rounds that depend on it.  Holds of
    other holders are kept; this holder's holds on runs not in ``runs`` are
    released.
    """
    holds = {name: [h for h in entries if h.get("holder") != holder]
             for name, entries in (dataset.info.get(HOLDS_KEY) or {}).items()}
    for name, (what, later) in runs.items():
        holds.setdefault(name, []).append({"holder": holder, "what": what, "later": sorted(int(k) for k in later)})
    dataset.info[HOLDS_KEY] = {name: entries for name, entries in holds.items() if entries}
    dataset.save()


def release_run(dataset, run_name):
    """Drop every hold on ``run_name`` and save the dataset (the run is deleted)."""
    holds = dict(dataset.info.get(HOLDS_KEY) or {})
    if holds.pop(run_name, None) is not None:
        dataset.info[HOLDS_KEY] = holds
        dataset.save()


def replacement_problem(dataset, run_name, replace):
    """Why ``run_name`` may not be selected again, or None.

    A held run is replaced only with ``replace``, and never while a later
    round depends on it.
    """
    holds = run_holds(dataset, run_name)
    if not holds:
        return None
    what = "; ".join(h["what"] for h in holds)
    later = sorted({k for h in holds for k in h.get("later", [])})
    if later:
        return (f"selection run {run_name!r} was pushed ({what}) and round(s) {', '.join(map(str, later))} were "
                f"selected after it and depend on it: it cannot be selected again; choose another run name")
    if not replace:
        return (f"selection run {run_name!r} was pushed ({what}); selecting it again would leave those tasks "
                f"behind: choose another run name, or ask to replace it (--replace; in the App: 'Replace the pushed "
                f"run') and push it again afterwards to update the queue")
    return None


def check_deletable(dataset, run_name, force):
    """InputError when ``run_name`` is held and ``force`` is not given."""
    holds = run_holds(dataset, run_name)
    if holds and not force:
        what = "; ".join(h["what"] for h in holds)
        raise InputError(f"selection run {run_name!r} was pushed ({what}); its tasks still point at its samples. "
                         f"Pass --force to delete the run anyway (the tasks stay in the annotation tool)")
