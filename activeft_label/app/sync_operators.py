"""FiftyOne App operators ``push_to_labelstudio`` and ``pull_from_labelstudio``: forms over :mod:`activeft_label.sync`.

Registered by :func:`activeft_label.app.register` next to ``select_samples``.
The Label Studio server and key come from the plugin's secrets
``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` (in open-source FiftyOne:
environment variables of the App's process); they are never shown.

Parameters (the names code can pass to ``execute_operator``)
-------------------------------------------------------------
push_to_labelstudio
    ``project_id`` (int) or ``title`` (+ ``labels`` "a,b,c" and ``task`` to
    create it), ``budget`` (count or "P%"; needed until the round has a
    selection run), ``round`` (default 1), ``run_name`` (default
    ``activeft``), ``reselect``, ``embeddings_field`` (else the default
    encoder), ``images`` (``auto`` / ``upload`` / ``local-files``),
    ``document_root``, ``task_field`` (default ``activeft_ls_task``),
    ``view_target``.
pull_from_labelstudio
    ``project_id``, ``label_field``, ``overwrite``, ``control``.
"""

import functools
import inspect
import re

import fiftyone.operators as foo
import fiftyone.operators.types as types

from .. import sync
from ..connectors import fiftyone as fo_connector
from ..connectors import labelstudio as ls_connector
from ..errors import ActiveFTError, InputError
from .forms import schedule_notice
from .progress import run_with_progress, show_results, showing_errors

_SECRETS_HELP = ("set the plugin secrets LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (in open-source FiftyOne: "
                 "environment variables of the App's process) and restart the App")


#: The command line's words in the library's messages, and what an App user sees instead (the form's labels and
#: the plugin secrets).  Longer phrases first, so that "--api-key or LABEL_STUDIO_API_KEY" is replaced whole.
_APP_WORDS = (
    ("--api-key or LABEL_STUDIO_API_KEY", "the plugin secret LABEL_STUDIO_API_KEY"),
    ("--url or LABEL_STUDIO_URL", "the plugin secret LABEL_STUDIO_URL"),
    ("--api-key", "the plugin secret LABEL_STUDIO_API_KEY"), ("--url", "the plugin secret LABEL_STUDIO_URL"),
    ("pass --labels a,b,c (and --task)", "give the labels a,b,c (and the task)"),
    ("leave out --budget", "leave the budget empty"), ("pass --budget N or P%", "give a budget (N or P%)"),
    ("pass --reselect", "tick 'Select this round again'"), ("pass --overwrite", "tick 'Overwrite labels that differ'"),
    ("another --run-name", "another run name"), ("another --task-field", "another task id field"),
    ("pass --control NAME", "give the control name"), ("leave out --labels", "leave the labels empty"),
    ("--project ID", "a project id"), ("--title TITLE", "a project title"), ("--labels/--task", "the labels/task"),
    ("--replace", "'Replace the pushed run'"), ("--reselect", "'Select this round again'"),
    ("--project", "the project id"), ("--title", "the project title"), ("--labels", "the labels"),
    ("--round", "the round"), ("--budget", "the budget"), ("--task", "the task"),
)


def in_app_words(message):
    """``message`` with the command line's options replaced by what the App's forms and secrets call them.

    Whole commands quoted in a message (``activeft sync push --round 2 ...``) are left as they are.
    """
    commands = re.findall(r"`?activeft [^;)`]*`?", message)
    for number, command in enumerate(commands):
        message = message.replace(command, f"\0{number}\0", 1)
    for cli, app in _APP_WORDS:
        message = message.replace(cli, app)
    for number, command in enumerate(commands):
        message = message.replace(f"\0{number}\0", command, 1)
    return message


def _translated(exc):
    translated = type(exc)(in_app_words(str(exc)))
    translated.exit_code = exc.exit_code
    return translated


def _app_errors(execute):
    """Errors of an operator's run in the App's words (same error type and exit status).

    An immediate run's generator also shows its error in the App before it
    raises it (:func:`.progress.showing_errors`).
    """
    def app_words(exc):
        return _translated(exc) if isinstance(exc, ActiveFTError) else exc

    @functools.wraps(execute)
    def wrapper(self, ctx):
        try:
            result = execute(self, ctx)
        except ActiveFTError as exc:
            raise _translated(exc) from None
        return showing_errors(ctx, result, app_words) if inspect.isgenerator(result) else result

    return wrapper


def _connect(ctx):
    url = ctx.secrets.get("LABEL_STUDIO_URL") if ctx.secrets else None
    key = ctx.secrets.get("LABEL_STUDIO_API_KEY") if ctx.secrets else None
    if not url or not key:
        raise InputError(f"no Label Studio server configured: {_SECRETS_HELP}")
    try:
        import label_studio_sdk  # noqa: F401
    except ImportError:
        raise InputError("the Label Studio operators need label-studio-sdk in the App's Python environment: "
                         "pip install 'activeft-label[labelstudio]'") from None
    return ls_connector.connect(url, key)


def _optional_int(value, name):
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a whole number, got {value!r}") from None


def _secrets_notice(ctx, inputs):
    if not (ctx.secrets and ctx.secrets.get("LABEL_STUDIO_URL") and ctx.secrets.get("LABEL_STUDIO_API_KEY")):
        inputs.view("no_server", types.Error(label="No Label Studio server configured", description=_SECRETS_HELP))
        return False
    return True


class PushToLabelStudio(foo.Operator):
    """Select samples (or reuse the selection) and queue them in a Label Studio project, rank 1 first."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="push_to_labelstudio",
            label="ActiveFT: push the selection to Label Studio",
            description="Queue the samples worth annotating first in a Label Studio project, in priority order",
            dynamic=True,
            execute_as_generator=True,      # an immediate run yields its progress (progress.py)
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        _secrets_notice(ctx, inputs)
        inputs.int("project_id", label="Label Studio project id (existing project)",
                   description="The number in the project's URL; leave empty to find or create one by title")
        inputs.str("title", label="Project title (find or create)")
        inputs.str("labels", label="Labels, comma-separated (to create the project)")
        inputs.enum("task", ["classification", "detection"], default="classification", label="Task",
                    view=types.Dropdown(choices=[types.Choice("classification", label="classification (Choices)"),
                                                 types.Choice("detection", label="detection (RectangleLabels)")]))
        inputs.str("budget", label="Budget", description="A count (200) or a percentage (1%); leave empty to push "
                                                          "an existing selection run")
        inputs.int("round", default=1, min=1, label="Round",
                   description="Round K > 1 selects more samples, after the ones already queued")
        inputs.bool("reselect", default=False, label="Select this round again",
                    description="Replace the round's existing selection with a new one at the budget above; its "
                                "tasks that are no longer selected lose their rank (only while no later round "
                                "was pushed)")
        inputs.str("run_name", default=fo_connector.DEFAULT_RUN_NAME, label="Selection run name")
        fields = fo_connector.embedding_fields(ctx.target_view())
        if fields:
            inputs.enum("embeddings_field", fields, default=fields[0], label="Embeddings field",
                        view=types.Dropdown(choices=[types.Choice(f, label=f) for f in fields]))
        inputs.enum("images", ["auto", "upload", "local-files"], default="auto", label="Images",
                    description="Upload the images, or let Label Studio serve them from its local-files root")
        inputs.str("document_root", label="Label Studio local-files document root (optional)")
        inputs.str("task_field", default=sync.TASK_FIELD, label="Task id field",
                   description="Integer sample field that receives each pushed sample's task id; each Label Studio "
                               "project of this dataset needs its own")
        schedule_notice(inputs, self.resolve_run_name(ctx))
        return types.Property(inputs, view=types.View(label="ActiveFT: push the selection to Label Studio"))

    def resolve_run_name(self, ctx):
        params = ctx.params
        where = (f"project {params['project_id']}" if params.get("project_id") else
                 f"project {params.get('title')!r}" if params.get("title") else "Label Studio")
        return f"ActiveFT: push {ctx.dataset_name} to {where}, round {params.get('round') or 1}"

    @_app_errors
    def execute(self, ctx):
        """Delegated: push, reporting with ``ctx.set_progress``, and return the result.  Immediate: a generator
        that yields the progress, then shows the result (tasks queued and created, the priority view's link)."""
        params = ctx.params
        options = {"embeddings_field": params.get("embeddings_field") or None}
        if not ctx.delegated:
            options["num_workers"] = 0      # an immediate run embeds inside the App server: no DataLoader workers
        arguments = dict(
            budget=params.get("budget") or None,
            project_id=_optional_int(params.get("project_id"), "project_id"),
            title=params.get("title") or None, labels=params.get("labels") or None,
            task=params.get("task") or "classification",
            round_number=_optional_int(params.get("round"), "round") or 1,
            run_name=params.get("run_name") or fo_connector.DEFAULT_RUN_NAME,
            reselect=bool(params.get("reselect")), task_field=params.get("task_field") or sync.TASK_FIELD,
            images=params.get("images") or "auto",
            document_root=params.get("document_root") or None, selection_options=options)
        target = ctx.target_view()
        conn = _connect(ctx)              # a missing secret or a refused key fails here, before the run starts
        if ctx.delegated:
            with conn:
                result = sync.push(target, conn, progress=lambda fraction, message: ctx.set_progress(
                    progress=fraction, label=message), **arguments)
            return _push_results(result)
        return self._immediate(ctx, target, conn, arguments)

    def _immediate(self, ctx, target, conn, arguments):
        with conn:
            result = yield from run_with_progress(
                ctx, lambda progress: sync.push(target, conn, progress=progress, **arguments), "activeft-push")
        results = _push_results(result)
        yield ctx.ops.reload_dataset()
        yield show_results(ctx, _push_outputs(results), results)
        yield ctx.ops.notify(f"Queued {result.queued} samples in Label Studio project {result.project_id} "
                             f"({result.created} new tasks)", variant="success")

    def resolve_output(self, ctx):
        return _push_outputs(getattr(ctx, "results", None) or {})


def _push_results(result):
    return {"project_id": result.project_id, "round": result.round, "run_name": result.run_name,
            "selected": result.selected, "queued": result.queued, "created": result.created,
            "cleared": result.cleared, "reused": result.reused, "url": result.url,
            "missing_samples": len(result.missing_samples), "message": result.describe()}


def _push_outputs(results):
    """The push's output form (what ``resolve_output`` returns, and what an immediate run shows itself)."""
    outputs = types.Object()
    outputs.int("queued", label="Samples queued")
    outputs.int("created", label="Tasks created")
    outputs.str("url", label="Priority view")
    if results.get("url"):
        outputs.view("open_url", types.LinkView(href=results["url"], label="Open the priority view in Label Studio"))
    outputs.str("message", label="Summary")
    return types.Property(outputs, view=types.View(label="Pushed to Label Studio"))


class PullFromLabelStudio(foo.Operator):
    """Write a Label Studio project's finished annotations to a label field, by sample id."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="pull_from_labelstudio",
            label="ActiveFT: pull annotations from Label Studio",
            description="Write the finished annotations of a Label Studio project to a label field",
            dynamic=True,
            execute_as_generator=True,      # an immediate run yields its progress (progress.py)
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        _secrets_notice(ctx, inputs)
        inputs.int("project_id", required=True, label="Label Studio project id")
        inputs.str("label_field", required=True, default="ground_truth", label="Label field",
                   description="Choices → Classification, RectangleLabels → Detections; created when absent")
        inputs.bool("overwrite", default=False, label="Overwrite labels that differ",
                    description="Without it, samples that already hold a different label keep it")
        inputs.str("control", label="Control name (only when the label config has several)")
        schedule_notice(inputs, self.resolve_run_name(ctx))
        return types.Property(inputs, view=types.View(label="ActiveFT: pull annotations from Label Studio"))

    def resolve_run_name(self, ctx):
        params = ctx.params
        return (f"ActiveFT: pull project {params.get('project_id') or '?'} into "
                f"{ctx.dataset_name}.{params.get('label_field') or 'ground_truth'}")

    @_app_errors
    def execute(self, ctx):
        """Delegated: pull, reporting with ``ctx.set_progress``, and return the result.  Immediate: a generator
        that yields the progress (annotations read out of the tasks), then shows the result."""
        params = ctx.params
        project_id = _optional_int(params.get("project_id"), "project_id")
        if project_id is None:
            raise InputError("project_id is required")
        arguments = dict(overwrite=bool(params.get("overwrite")), control=params.get("control") or None)
        label_field = params.get("label_field") or "ground_truth"
        target = ctx.target_view()
        conn = _connect(ctx)              # a missing secret or a refused key fails here, before the run starts
        if ctx.delegated:
            with conn:
                result = sync.pull(target, conn, project_id, label_field, progress=lambda fraction, message:
                                   ctx.set_progress(progress=fraction, label=message), **arguments)
            return _pull_results(result)
        return self._immediate(ctx, target, conn, project_id, label_field, arguments)

    def _immediate(self, ctx, target, conn, project_id, label_field, arguments):
        with conn:
            result = yield from run_with_progress(
                ctx, lambda progress: sync.pull(target, conn, project_id, label_field, progress=progress,
                                                **arguments), "activeft-pull")
        results = _pull_results(result)
        yield ctx.ops.reload_dataset()
        yield ctx.ops.reload_samples()          # the open grid and sample view show the new labels at once
        yield show_results(ctx, _pull_outputs(), results)
        yield ctx.ops.notify(f"{len(result.written)} labels written to {result.label_field!r}", variant="success")

    def resolve_output(self, ctx):
        return _pull_outputs()


def _pull_results(result):
    return {"written": len(result.written), "unchanged": len(result.unchanged),
            "conflicts": len(result.conflicts), "cancelled": len(result.cancelled),
            "missing_samples": len(result.missing_samples), "deleted_tasks": len(result.deleted_tasks),
            "message": result.describe()}


def _pull_outputs():
    """The pull's output form (what ``resolve_output`` returns, and what an immediate run shows itself)."""
    outputs = types.Object()
    outputs.int("written", label="Labels written")
    outputs.int("conflicts", label="Kept (a different label was there)")
    outputs.str("message", label="Summary")
    return types.Property(outputs, view=types.View(label="Pulled from Label Studio"))
