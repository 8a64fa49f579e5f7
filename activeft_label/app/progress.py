"""Progress and results of immediate (not delegated) operator runs, the way the FiftyOne App takes them.

An immediate run shows progress only when its operator executes as a
generator (``execute_as_generator=True``) and yields
``ctx.ops.set_progress(...)`` while it works (FiftyOne's "generator
execution"); ``ctx.set_progress`` reaches the App only from a delegated run.
FiftyOne drops a generator's return value (the App's output form is then not
shown, and ``execute_operator`` returns ``result=None``), so a generator run
shows its result itself with ``ctx.ops.show_output(outputs, results)``: the
App's builtin ``show_output`` operator renders ``outputs`` (an output form, as
``resolve_output`` returns it) with ``results``, in the same panel the
progress bar was in.  Code that runs the operator with
``fiftyone.operators.execute_operator`` finds those results in the
``show_output`` request of the returned executor (:func:`shown_results`).

An error raised inside a generator run reaches the App as a cut-off
stream, which the App shows as nothing at all (the prompt just closes;
measured with fiftyone 1.22.1), so :func:`showing_errors` yields the error
(a notification and an error panel) before it raises it on, for
``execute_operator`` callers.

Delegated runs are not generators: they report with ``ctx.set_progress``
and return their result, which the delegated-operations worker records.
"""

import math
import queue
import threading

import fiftyone.operators.types as types


def run_with_progress(ctx, work, name):
    """Run ``work(progress)`` in a worker thread; yield ``set_progress`` for each report; return its result.

    ``progress(fraction, message)`` is the callback ``work`` reports through
    (from any thread).  Use as ``result = yield from run_with_progress(...)``.
    An error of ``work`` is raised here, in the operator's thread, after the
    reports it made.
    """
    messages = queue.Queue()
    outcome = {}

    def target():
        try:
            outcome["result"] = work(lambda fraction, message: messages.put((fraction, message)))
        except BaseException as exc:  # re-raised below, in the operator's thread
            outcome["error"] = exc
        finally:
            messages.put(None)

    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    while True:
        item = messages.get()
        if item is None:
            break
        fraction, message = item
        yield ctx.ops.set_progress(label=message, progress=fraction)
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def show_results(ctx, outputs, results):
    """The ``show_output`` request that shows ``results`` in the App through the output form ``outputs``.

    Numbers that JSON cannot carry (NaN, infinities) are shown empty.
    """
    return ctx.ops.show_output(outputs.to_json(), _json_numbers(results))


def showing_errors(ctx, generator, translate=None):
    """Run ``generator`` (``yield from``); on an error, yield it to the App (notification + panel), then raise it.

    ``translate(exc)`` gives the error to show and raise (default: ``exc``).
    """
    try:
        return (yield from generator)
    except Exception as exc:
        shown = translate(exc) if translate is not None else exc
        message = str(shown) or type(shown).__name__
        outputs = types.Object()
        outputs.view("error", types.Error(label="The run failed", description=message))
        yield ctx.ops.notify(message, variant="error")
        yield ctx.ops.show_output(types.Property(outputs).to_json(), {})
        if shown is exc:
            raise
        raise shown from None


def _json_numbers(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_numbers(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_numbers(item) for item in value]
    return value


def shown_results(execution):
    """The results an immediate generator run showed (its last ``show_output``), from ``execute_operator``'s return.

    Returns None when the run showed none (or was delegated: then
    ``execution.result`` describes the queued operation).
    """
    executor = getattr(execution, "executor", None)
    requests = executor.to_json().get("requests", []) if executor is not None else []
    shown = [r for r in requests if r.get("operator_uri") == "show_output"]
    return (shown[-1].get("params") or {}).get("results") if shown else None
