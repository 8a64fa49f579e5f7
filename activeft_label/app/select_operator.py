"""The FiftyOne App operator ``select_samples``: a form over :mod:`activeft_label.connectors.fiftyone`.

The plugin (``activeft_label/app/plugin/``, installed with ``activeft
fiftyone install-plugin``) only imports :mod:`activeft_label.app` and calls
its ``register``, so the operator follows the installed package.  Every check and every write is the
connector's: the form shows :func:`.fiftyone.preview`'s findings next to the
inputs they concern, and running calls :func:`.fiftyone.select_samples`.

Parameters (the names code can pass to ``execute_operator``)
-------------------------------------------------------------
budget : int or str
    A count (``50``) or a percentage of the target (``"5%"``).  Default:
    ``"1%"``, or ``"10%"`` below 100 samples.
view_target : str
    ``"DATASET"``, ``"CURRENT_VIEW"``, ``"SELECTED_SAMPLES"``, ...; absent:
    the current view.
embeddings_field : str
    Read embeddings from this vector field.  When neither it nor ``model`` is
    given, the form's default applies: the target's first vector field, or
    the default model when the target has none.
model, pretrained, store_embeddings : str
    Compute embeddings with this encoder (default ``efficientnet-lite0``),
    optionally storing them in a field.
precision : str
    The encoder's number format: ``auto`` (default, fp32 today), ``fp32`` or
    ``bf16`` (faster where the hardware computes it natively).
ray : bool
    Compute the embeddings on the Ray cluster that ``ACTIVEFT_RAY_ADDRESS``
    names in the App's environment (offered only then; the run is then
    delegated: an immediate run would connect the App server itself to Ray).
tag, rank_field, run_name : str
    Defaults ``activeft``, ``activeft_rank``, ``activeft``.
exclude_labeled : str
    A field name (samples with a value count as labeled) or ``tag:NAME``.
replace : bool
    Select a run again although it was pushed to Label Studio (offered by
    the form only then; refused while a later round depends on it).
method, temperature, iterations, seed, center
    Advanced settings of the selection.
"""

import numbers
import os

import fiftyone.operators as foo
import fiftyone.operators.types as types
from fiftyone.operators.executor import ExecutionOptions

from ..embeddings import DEFAULT_MODEL
from ..embeddings.options import EmbeddingOptions
from ..embeddings.precision import PRECISIONS, resolve_precision
from ..devices import resolve_device
from ..errors import InputError
from ..selection import METHODS
from ..selection.options import SelectionOptions
from .forms import schedule_notice
from .progress import run_with_progress, show_results, showing_errors
from ..connectors import fiftyone as connector

#: Above this many samples to embed, the form proposes a delegated (background) run.
LARGE_TO_EMBED = 1000
#: Above this many samples read from a vector field, the form proposes a delegated run.
LARGE_TO_READ = 50000
#: The form reads a vector field to check it only up to this many samples (the run always checks).
FORM_VECTOR_CHECK_LIMIT = 5000
#: The form looks for missing image files only up to this many samples.
FORM_FILE_CHECK_LIMIT = 20000

_TARGET_NAMES = {"DATASET": "the whole dataset", "CURRENT_VIEW": "the current view",
                 "SELECTED_SAMPLES": "the selected samples", "BASE_VIEW": "the base view",
                 "DATASET_VIEW": "the dataset view"}


def default_budget(size):
    """The budget the form proposes for a target of ``size`` samples."""
    return "1%" if size >= 100 else "10%"


def ray_cluster():
    """The Ray cluster the App's environment names (``ACTIVEFT_RAY_ADDRESS``), or None."""
    return os.environ.get("ACTIVEFT_RAY_ADDRESS") or None


def _precision_problem(precision):
    """Why an explicit bf16 cannot run on this server's device (None when it can, or for other values)."""
    if precision != "bf16":
        return None
    try:
        resolve_precision("bf16", resolve_device("auto"))
    except InputError as exc:
        return str(exc).replace("--precision ", "")
    return None


def _source(params, vector_fields):
    if params.get("embeddings") in ("field", "model"):
        return params["embeddings"]
    if params.get("embeddings_field"):
        return "field"
    if params.get("model"):
        return "model"
    return "field" if vector_fields else "model"


def run_options(ctx, size):
    """Connector keyword arguments from the operator's parameters (absent ones take the defaults).

    Immediate runs (not delegated) load images in the App server's process itself (``num_workers=0``);
    delegated runs keep the default DataLoader workers.
    """
    params = ctx.params
    budget = params.get("budget")
    if budget is None or budget == "":
        budget = default_budget(size)
    options = dict(
        budget=budget,
        tag=params.get("tag") or connector.DEFAULT_TAG,
        rank_field=params.get("rank_field") or connector.DEFAULT_RANK_FIELD,
        run_name=params.get("run_name") or connector.DEFAULT_RUN_NAME,
        exclude_labeled=(params.get("exclude_labeled") or "").strip() or None,
        replace=bool(params.get("replace")),
    )
    vector_fields = connector.embedding_fields(ctx.target_view())
    if _source(params, vector_fields) == "field":
        # Absent: the form's default, the target's first vector field.
        options["embeddings_field"] = params.get("embeddings_field") or (vector_fields[0] if vector_fields else None)
    else:
        embedding = EmbeddingOptions(model=params.get("model") or DEFAULT_MODEL,
                                     pretrained=params.get("pretrained") or None,
                                     precision=params.get("precision") or "auto",
                                     ray_address=ray_cluster() if params.get("ray") else None)
        options.update(embedding.as_kwargs(), store_embeddings=params.get("store_embeddings") or None)
    # The form's advanced settings; the rest of the selection keeps SelectionOptions' defaults.
    given = {name: params[name] for name in ("method", "temperature", "iterations", "seed", "center")
             if params.get(name) is not None}
    options.update(SelectionOptions(**given).as_kwargs())
    if not ctx.delegated:
        # An immediate run works inside the App server's own process: no DataLoader worker processes there.
        options["num_workers"] = 0
    return options


class SelectSamples(foo.Operator):
    """Select the samples worth annotating first: tag, rank field, saved view sorted by rank."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="select_samples",
            label="ActiveFT: select samples to annotate",
            description="Pick the samples worth annotating first (ActiveFT) and show them sorted by rank",
            dynamic=True,
            execute_as_generator=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_execution_options(self, ctx):
        target = ctx.target_view()
        vector_fields = connector.embedding_fields(target)
        source = _source(ctx.params, vector_fields)
        limit = LARGE_TO_READ if source == "field" else LARGE_TO_EMBED
        on_ray = source == "model" and bool(ctx.params.get("ray")) and ray_cluster() is not None
        return ExecutionOptions(allow_immediate_execution=not on_ray, allow_delegated_execution=True,
                                default_choice_to_delegated=on_ray or len(target) > limit)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.view_target(ctx, action_description="Select from")
        params = ctx.params
        target = ctx.target_view()
        size = len(target)
        vector_fields = connector.embedding_fields(target)
        source = _source(params, vector_fields)
        options = run_options(ctx, size)

        report = connector.preview(
            target, options["budget"], embeddings_field=options.get("embeddings_field"),
            exclude_labeled=options["exclude_labeled"], tag=options["tag"],
            rank_field=options["rank_field"], run_name=options["run_name"],
            store_embeddings=options.get("store_embeddings"), replace=options["replace"],
            check_files=source == "model" and size <= FORM_FILE_CHECK_LIMIT,
            check_vectors=source == "field" and size <= FORM_VECTOR_CHECK_LIMIT)
        if source == "field" and not options.get("embeddings_field"):
            report.problems["embeddings_field"] = ("the target has no vector field to read embeddings from; "
                                                    "choose \"Compute with a model\"")

        where = _TARGET_NAMES.get(params.get("view_target"), "the current view")
        summary = f"Target: {size} samples ({where})."
        if report.fixed_count:
            summary += f" {report.fixed_count} already labeled (kept as fixed, never selected)."
        if report.budget_count is not None:
            summary += f" Budget: {report.budget_count} samples will be tagged and ranked."
        inputs.view("summary", types.Notice(label=summary))
        if "view_target" in report.problems:  # no input of its own to show it at
            inputs.view("target_problem", types.Error(label="Cannot run on this target",
                                                      description=report.problems["view_target"]))
        for number, note in enumerate(report.notes):
            inputs.view(f"note_{number}", types.Warning(label=note))

        fields = {}
        budget_help = dict(label="Budget", description="How many samples to select: a count like 50, or a "
                                                       "percentage of the target like 5%")
        if isinstance(params.get("budget"), numbers.Real) and not isinstance(params.get("budget"), bool):
            # a count passed from code
            kind = inputs.int if isinstance(params["budget"], numbers.Integral) else inputs.float
            fields["budget"] = kind("budget", required=True, **budget_help)
        else:
            fields["budget"] = inputs.str("budget", default=default_budget(size), required=True, **budget_help)

        choice = types.RadioGroup()
        choice.add_choice("field", label="An existing vector field",
                          description="e.g. written by compute_embeddings() or FiftyOne Brain")
        choice.add_choice("model", label="Compute with a model", description="cached on disk for later runs")
        inputs.enum("embeddings", choice.values(), default=source, label="Embeddings", view=choice)
        if source == "field":
            name = options.get("embeddings_field")
            if vector_fields and (name is None or name in vector_fields):
                dropdown = types.Dropdown()
                for candidate in vector_fields:
                    dropdown.add_choice(candidate, label=candidate)
                fields["embeddings_field"] = inputs.enum("embeddings_field", dropdown.values(),
                                                         default=vector_fields[0], label="Vector field",
                                                         view=dropdown)
            else:
                fields["embeddings_field"] = inputs.str("embeddings_field", label="Vector field")
        else:
            fields["model"] = inputs.str(
                "model", default=DEFAULT_MODEL, label="Model",
                description="efficientnet-lite0 (offline, ImageNet) or an open_clip model name such as ViT-B-32")
            inputs.str("pretrained", label="Pretrained weights (open_clip only)",
                       description="A pretrained tag such as laion2b_s34b_b79k, or a checkpoint file on the server")
            precisions = types.Dropdown()
            for value in PRECISIONS:
                precisions.add_choice(value, label=value)
            fields["precision"] = inputs.enum(
                "precision", precisions.values(), default="auto", label="Precision", view=precisions,
                description="auto = fp32. bf16: about 1.5× as fast where the server's hardware computes it "
                            "natively; the same selection quality measured, slightly different features")
            if ray_cluster():
                inputs.bool("ray", default=False, label="Compute on the Ray cluster",
                            description=f"Embed on the Ray cluster at {ray_cluster()} (ACTIVEFT_RAY_ADDRESS); runs "
                                        f"in the background (delegated)")
            problem = _precision_problem(params.get("precision"))
            if problem:
                report.problems["precision"] = problem
            fields["store_embeddings"] = inputs.str(
                "store_embeddings", label="Store embeddings in field (optional)",
                description="A later run can then read them as an existing vector field")

        fields["tag"] = inputs.str("tag", default=connector.DEFAULT_TAG, label="Tag",
                                   description="Added to the selected samples")
        fields["rank_field"] = inputs.str("rank_field", default=connector.DEFAULT_RANK_FIELD, label="Rank field",
                                          description="Integer field: 1 = annotate first")
        fields["run_name"] = inputs.str(
            "run_name", default=connector.DEFAULT_RUN_NAME, label="Run name",
            description="Also the name of the saved view; running again with the same name replaces that run's "
                        "tags and ranks")
        if connector.run_holds(connector.root_dataset(target), options["run_name"]):
            inputs.bool("replace", default=False, label="Replace the pushed run",
                        description="This run was pushed to Label Studio: select it again anyway (refused while a "
                                    "later round depends on it), then push it again to update the queue")
        fields["exclude_labeled"] = inputs.str(
            "exclude_labeled", label="Already labeled (optional)",
            description="A label field (samples where it is set) or tag:NAME; those samples are never selected and "
                        "the new picks cover what they do not")

        inputs.bool("advanced", default=False, label="Advanced settings", view=types.CheckboxView())
        if params.get("advanced"):
            inputs.enum("method", list(METHODS), default="activeft", label="Method",
                        view=types.Dropdown(choices=[types.Choice(m, label=m) for m in METHODS]))
            inputs.float("temperature", default=0.07, min=1e-6, label="Temperature τ")
            inputs.int("iterations", default=300, min=0, label="Iterations")
            inputs.int("seed", default=0, min=0, label="Seed")
            inputs.bool("center", default=False, label="Centre the embeddings",
                        description="Compare samples after subtracting the pool's mean direction (every method)")

        if size > (LARGE_TO_READ if source == "field" else LARGE_TO_EMBED):
            inputs.view("delegation", types.Notice(
                label="Large target: this runs in the background by default (start `fiftyone delegated launch` "
                      "to run queued operations)"))
        schedule_notice(inputs, self.resolve_run_name(ctx))

        for name, message in report.problems.items():
            prop = fields.get(name) or fields["budget"]
            prop.error_message = f"{prop.error_message} {message}" if prop.invalid and prop.error_message \
                else message
            prop.invalid = True
        return types.Property(inputs, view=types.View(label="ActiveFT: select samples to annotate"))

    def resolve_run_name(self, ctx):
        params = ctx.params
        return (f"ActiveFT: select {params.get('budget') or 'the default budget'} of {ctx.dataset_name} (run "
                f"{params.get('run_name') or connector.DEFAULT_RUN_NAME!r})")

    def execute(self, ctx):
        target = ctx.target_view()
        options = run_options(ctx, len(target))
        if ctx.delegated:
            summary = connector.select_samples(
                target, progress=lambda fraction, message: ctx.set_progress(progress=fraction, label=message),
                **options)
            return summary.to_dict()
        return showing_errors(ctx, self._stream(ctx, target, options))

    def _stream(self, ctx, target, options):
        """Run in a worker thread; yield the App's progress bar, then show the ranked samples."""
        summary = yield from run_with_progress(
            ctx, lambda progress: connector.select_samples(target, progress=progress, **options), "activeft-select")
        # The App knows only the saved views it loaded, so the ranked view is sent as stages (a Select, ordered).
        yield ctx.ops.reload_dataset()
        yield ctx.ops.set_view(view=ctx.dataset.load_saved_view(summary.saved_view))
        yield show_results(ctx, _select_outputs(), summary.to_dict())   # in place of the finished progress bar
        yield ctx.ops.notify(f"ActiveFT selected {summary.count} of {summary.target_size} samples: tag "
                             f"{summary.tag!r}, rank field {summary.rank_field!r}, saved view "
                             f"{summary.saved_view!r} (rank 1 first)", variant="success")

    def resolve_output(self, ctx):
        return _select_outputs()


def _select_outputs():
    """The selection's output form (``resolve_output``'s, and what an immediate run shows itself)."""
    outputs = types.Object()
    outputs.int("selected", label="Selected samples")
    outputs.int("target_size", label="Target size")
    outputs.float("coverage", label="Coverage (lower is better)")
    outputs.str("saved_view", label="Saved view (rank 1 first)")
    outputs.str("tag", label="Tag")
    outputs.str("rank_field", label="Rank field")
    return types.Property(outputs, view=types.View(label="ActiveFT selection"))
