"""Pieces the App's operator forms share."""

import fiftyone.operators.types as types


#: What the forms say about "Schedule" (delegated execution).  After "Schedule" the App itself confirms with
#: "Operation successfully scheduled" and closes the form; nothing of the operator runs until a worker takes the
#: queued run, and the open-source App has no page that lists queued runs, so the form says beforehand how the
#: run will execute and where to follow it.
SCHEDULE_NOTE = ("Schedule queues the run (the App confirms: \"Operation successfully scheduled\"). It then waits "
                 "for a delegated-operations worker: in open-source FiftyOne run `fiftyone delegated launch` in a "
                 "terminal of the App's Python environment (Schedule is offered when the App runs with "
                 "FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true). `fiftyone delegated list` lists the run as")


def schedule_notice(inputs, run_name):
    """Say, in a form, how a scheduled (delegated) run executes and where to find it."""
    inputs.view("schedule_note", types.Notice(label=f"{SCHEDULE_NOTE} {run_name!r} (`fiftyone delegated info ID` "
                                                    f"shows its progress and result)."))
