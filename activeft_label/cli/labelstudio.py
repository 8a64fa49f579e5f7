"""``activeft labelstudio``: put a selection in front of Label Studio annotators, in priority order.

A thin face over :mod:`activeft_label.connectors.labelstudio`; the SDK is
imported only when a command runs, so ``activeft --help`` stays fast.
"""

import os

import click

from ..errors import InputError
from .options import (CONTEXT, common_options, friendly_errors, guard_secrets, model_options, report_skipped, say,
                      selection_options, server_options)

_FIELDS_HELP = "Task data field that holds the image URL (default: the value of the label config's <Image> tag)."


@click.group(context_settings=CONTEXT)
def labelstudio():
    """Queue the selection for annotation in Label Studio.

    \b
    select  rank the tasks of an existing project and queue the best ones
    setup   create a project from a folder of images, holding only the selection

    Every task that activeft writes carries the item's stable id (data field
    activeft_id) and its priority (activeft_rank, 1 = annotate first).  Both
    commands create or replace a Data Manager view "ActiveFT priority" that
    lists the selected tasks in rank order: open it and choose "Label Tasks As
    Displayed".  Running a command again updates the tasks; it never
    duplicates them, and it completes a run that failed half-way.

    The server and key come from --url / --api-key or LABEL_STUDIO_URL /
    LABEL_STUDIO_API_KEY.  Personal access tokens (the default in new
    organisations) and legacy tokens both work.
    """


@labelstudio.command("select", context_settings=CONTEXT)
@click.option("--project", "-p", "project_id", required=True, type=int, metavar="ID",
              help="The project to select from (the number in its URL).")
@selection_options
@click.option("--mode", type=click.Choice(["view", "project"]), default="view", show_default=True,
              help="view: rank the selected tasks in place and create the priority view; project: copy them, in "
                   "rank order, into a new project on sequential sampling.")
@click.option("--view", "view_id", type=int, metavar="VIEW",
              help="Only consider the tasks of this Data Manager view (the 'tab' number in the Data Manager URL).")
@click.option("--image-field", metavar="NAME", help=_FIELDS_HELP)
@click.option("--title", help="Title of the new project in --mode project (default: '<project title> - ActiveFT').")
@click.option("--predictions", is_flag=True,
              help="Also write a prediction per selected task (empty result, score = rank/(B+1), model version "
                   "below) and set the project's model version, so 'Uncertainty sampling' serves them first too.")
@click.option("--model-version", default="activeft", show_default=True,
              help="Model version of those predictions.")
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              help="Also write the selection (rank,index,id,path,cluster_size) to this .csv or .json file.")
@model_options
@common_options
@server_options
@friendly_errors
@guard_secrets
def select_command(project_id, budget, selection, mode, view_id, image_field, title, predictions, model_version, out,
                   embedding, device, quiet, url, api_key):
    """Rank a project's tasks and queue the best BUDGET for annotation.

    Pulls every task of the project (or of one Data Manager view), fetches
    each image with the server's credentials (uploaded files, local-files
    storage, cloud storage through Label Studio, or plain http(s) URLs),
    embeds it, and selects BUDGET tasks with ActiveFT.  Tasks that already
    have annotations are never selected; they steer the new picks towards
    what they do not cover.  Broken image references are skipped and listed.

    \b
    --mode view (default) writes activeft_rank into the selected tasks,
    removes it from tasks of an earlier selection, and creates or replaces
    the view "ActiveFT priority" (only ranked tasks, by rank).
    --mode project creates a project that receives only the selected tasks,
    imported in rank order, on "Sequential sampling" (run again: updated).

    \b
    Examples:
      activeft labelstudio select --project 3 --budget 200
      activeft labelstudio select -p 3 -b 2% --predictions
      activeft labelstudio select -p 3 -b 100 --mode project --title "Round 2"
    """
    from ..connectors.labelstudio import connect, prioritize
    from ..files.output import check_output_path, write_selection
    from ..devices import resolve_device

    if out:
        check_output_path(out)
    resolve_device(device)
    if title is not None and mode != "project":
        raise InputError("--title only applies to --mode project")
    settings = selection.as_kwargs()
    conn = connect(url, api_key)
    with conn:
        pool, result, report = prioritize(
            conn, project_id, budget, mode=mode, view=view_id, field=image_field, title=title,
            predictions=predictions, model_version=model_version, method=settings.pop("method"),
            select_options={**settings, "device": device}, embed_options={**embedding.as_kwargs(), "device": device},
            progress=not quiet)
    report_skipped([(f"task {task_id}", reason) for task_id, reason in pool.skipped])
    if out:
        write_selection(out, result.records(pool.ids, pool.refs, pool.rows))
    title_text = pool.project.get("title") or ""
    say(f"Pulled {len(pool.tasks)} tasks of project {pool.project['id']} ({title_text}); {len(pool)} images "
        f"embedded ({pool.precision}), {len(pool.skipped)} skipped.")
    fixed = f"; {pool.labeled.size} annotated tasks kept as fixed centroids" if pool.labeled.size else ""
    say(f"Selected {result.budget} of {len(pool) - pool.labeled.size} unannotated tasks with {selection.method} in "
        f"{result.elapsed:.1f} s{fixed}.")
    _say_report(report, mode)
    if out:
        say(f"Wrote {out}.")


@labelstudio.command("setup", context_settings=CONTEXT)
@click.argument("source")
@click.option("--title", "-t", required=True, help="Project title (3 to 50 characters).")
@click.option("--labels", "-l", required=True, metavar="A,B,C", help="Label names, separated by commas.")
@click.option("--task", type=click.Choice(["classification", "detection"]), default="classification",
              show_default=True, help="classification: one choice per image; detection: rectangles with labels.")
@selection_options
@click.option("--images", type=click.Choice(["auto", "upload", "local-files"]), default="auto", show_default=True,
              help="How the server gets the images: upload them, or serve them from local-files storage (the "
                   "server must run with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and the images must lie "
                   "under its document root). auto: local files when --document-root holds the images, else "
                   "upload.")
@click.option("--document-root", type=click.Path(file_okay=False), envvar="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT",
              show_envvar=True, help="The server's local-files document root (same machine or shared disk).")
@click.option("--import-batch", type=click.IntRange(1), default=500, show_default=True,
              help="Tasks per import request (with --images upload, also the images uploaded before each import).")
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              help="Also write the selection (rank,index,id,path,cluster_size) to this .csv or .json file.")
@model_options
@common_options
@server_options
@friendly_errors
@guard_secrets
def setup_command(source, title, labels, task, budget, selection, images, document_root, import_batch, out, embedding,
                  device, quiet, url, api_key):
    """Create a Label Studio project holding the best BUDGET images of SOURCE.

    SOURCE is a folder of images (searched recursively) or a text file with
    one image path per line, as for `activeft select` (for the samples of a
    FiftyOne dataset, use `activeft sync push`).  The images are embedded
    and BUDGET of them selected with ActiveFT; then the project is created
    with a labeling config for --task and --labels, the selected images are
    uploaded (or served from local-files storage) and imported in priority
    order on "Sequential sampling", and the view "ActiveFT priority" lists
    them by rank.  Prints the project's URL.

    Each task's data holds image, activeft_id (the path relative to the
    folder) and activeft_rank.  Running the command again with the same
    title completes or updates that project; it never duplicates tasks, and
    images that an interrupted run had already uploaded (same file name,
    same bytes) are reused instead of uploaded again.

    The selection is recorded in the embeddings cache folder (--cache-dir /
    ACTIVEFT_CACHE_DIR, default ~/.cache/activeft-label), as
    labelstudio/selections/KEY.json, where KEY is a SHA-256 of the pool
    (each image's id and its features), the budget (as a count), the
    selection options (method, loss, iterations, temperature, lr, seed,
    centring) and the activeft version.  A re-run with the same images,
    budget and options reuses that selection without running the optimizer
    (it says so) and leaves a project that already holds it unchanged; a
    changed input selects again.  --no-cache neither reads nor writes the
    record.

    \b
    Examples:
      activeft labelstudio setup ./images --title "Birds" --labels sparrow,finch,crow --budget 300
      activeft labelstudio setup ./images -t "Cars" -l car,truck --task detection -b 1%
    """
    from ..budget import check_budget_form
    from ..connectors.labelstudio import (check_images_option, check_title, connect, parse_labels, project_url,
                                         select_or_reuse, setup_project)
    from ..files.output import check_output_path, write_selection
    from ..files.pool import load_pool
    from ..devices import resolve_device
    from ..files.sources import is_features_file

    if source.startswith("fiftyone:"):
        raise InputError(f"{source}: `activeft labelstudio setup` takes a folder or a list of images; to queue the "
                         f"samples of a FiftyOne dataset use `activeft sync push -d DATASET --title ... --labels ...`")
    if not os.path.exists(source):
        raise InputError(f"{source} does not exist; pass a folder of images or a text file listing image paths")
    if is_features_file(source):
        raise InputError(f"{source} is a features file; setup needs the images: pass a folder or a list of images")
    check_title(title)
    parse_labels(labels)
    if out:
        check_output_path(out)
    check_images_option([], images, document_root)     # the selected paths are checked before the project exists
    resolve_device(device)
    check_budget_form(budget)

    conn = connect(url, api_key)  # check the server and key before the (long) embedding
    with conn:
        pool = load_pool(source, **embedding.as_kwargs(), device=device, progress=not quiet)
        report_skipped(pool.skipped)
        result, recorded = select_or_reuse(pool, budget, selection.as_kwargs(), device=device,
                                           cache_dir=embedding.cache_dir, progress=not quiet)
        report = setup_project(conn, title, labels, pool, result, task=task, images=images,
                               document_root=document_root, batch_size=import_batch, progress=not quiet)
    if out:
        write_selection(out, result.records(pool.ids, pool.paths, pool.source_index))
    if recorded:
        say(f"Reused the selection of {result.budget} of {len(pool)} images recorded {recorded['recorded_at']} "
            f"(same images, budget and options; {recorded['path']}): the optimizer did not run.")
    else:
        say(f"Selected {result.budget} of {len(pool)} images with {selection.method} in {result.elapsed:.1f} s.")
    how = (f"{report.uploaded} images uploaded" if report.images == "upload"
           else "images served from local-files storage")
    if report.reused_uploads:
        how += f", {report.reused_uploads} uploaded by an interrupted run reused"
    say(f"Project {report.project_id} ({title}): {report.created} tasks imported in priority order ({how}).")
    if report.updated or report.unchanged or report.cleared:
        say(f"Already there: {report.updated} updated, {report.unchanged} unchanged, {report.cleared} earlier "
            f"ranks cleared.")
    for warning in report.warnings:
        say(f"Warning: {warning}", err=True)
    say(f"Priority view '{_view_title()}': {report.url}")
    say(f"Project: {project_url(conn, report.project_id)}")
    if out:
        say(f"Wrote {out}.")


def _view_title():
    from ..connectors.labelstudio import VIEW_TITLE

    return VIEW_TITLE


def _say_report(report, mode):
    if mode == "project":
        say(f"Project {report.project_id}: {report.created} tasks imported in priority order, {report.updated} "
            f"updated, {report.unchanged} unchanged, {report.cleared} earlier ranks cleared.")
    else:
        say(f"Ranks written: {report.updated} tasks updated, {report.unchanged} unchanged, {report.cleared} earlier "
            f"ranks cleared.")
    if report.predictions:
        say(f"Priority predictions: {report.predictions} written or changed.")
    for warning in report.warnings:
        say(f"Warning: {warning}", err=True)
    say(f"Priority view '{_view_title()}': {report.url}")
