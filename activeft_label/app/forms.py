"""Pieces the App's operator forms share."""

import fiftyone.operators.types as types


#: What the forms say about "Schedule" (delegated execution): the App shows nothing more once it is scheduled.
SCHEDULE_NOTE = ("Schedule queues the run for a delegated-operations worker (start one with `fiftyone delegated "
                 "launch`); the App's Runs page lists it, with its progress and result, as")


def schedule_notice(inputs, run_name):
    """Say, in a form, how a scheduled (delegated) run executes and where to find it."""
    inputs.view("schedule_note", types.Notice(label=f"{SCHEDULE_NOTE} {run_name!r}."))
