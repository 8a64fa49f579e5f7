"""``activeft labelstudio``: put a selection in front of Label Studio annotators, in priority order.

A thin face over :mod:`activeft_label.connectors.labelstudio`; the SDK is
imported only when a command runs, so ``activeft --help`` stays fast.
``serve`` checks its options and then hands its process over (``exec``) to
``python -m activeft_label.backend``: the ML backend is a face of its own, on
the command line's layer, so the command line starts it rather than imports
it (the settings travel as JSON in ``ACTIVEFT_BACKEND_SETTINGS``, the key in
``LABEL_STUDIO_API_KEY``).
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
    select   rank the tasks of an existing project and queue the best ones
    setup    create a project from a folder of images, holding only the selection
    serve    run ActiveFT as an ML backend: connected projects re-rank as
             annotators label
    connect  connect a project to a running backend (Settings > Model)

    Every task that activeft writes carries the item's stable id (data field
    activeft_id) and its priority (activeft_rank, 1 = annotate first).  select
    and setup create or replace a Data Manager view "ActiveFT priority" that
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
@click.option("--backend-url", metavar="URL",
              help="Also connect the project to the ActiveFT ML backend running at URL (`activeft labelstudio "
                   "serve`), as `activeft labelstudio connect` does: its queue then re-ranks as annotators label.")
@model_options
@common_options
@server_options
@friendly_errors
@guard_secrets
def setup_command(source, title, labels, task, budget, selection, images, document_root, import_batch, out,
                  backend_url, embedding, device, quiet, url, api_key):
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
    if backend_url:
        backend_url = _check_backend_url(backend_url)

    conn = connect(url, api_key)  # check the server and key before the (long) embedding
    with conn:
        pool = load_pool(source, **embedding.as_kwargs(), device=device, progress=not quiet)
        report_skipped(pool.skipped)
        result, recorded = select_or_reuse(pool, budget, selection.as_kwargs(), device=device,
                                           cache_dir=embedding.cache_dir, progress=not quiet)
        report = setup_project(conn, title, labels, pool, result, task=task, images=images,
                               document_root=document_root, batch_size=import_batch, progress=not quiet)
        connected = _connect_backend(conn, report.project_id, backend_url) if backend_url else None
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
    if connected is not None:
        _say_connected(connected, report.project_id, backend_url)
    if out:
        say(f"Wrote {out}.")


#: The environment variable that hands the settings to the backend process (activeft_label.backend.settings).
_BACKEND_SETTINGS_ENV = "ACTIVEFT_BACKEND_SETTINGS"


@labelstudio.command("serve", context_settings=CONTEXT)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface, e.g. inside a container).")
@click.option("--port", default=9090, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@selection_options(budget_required=False,
                   budget_help="Tasks to queue first in each project: a count (100) or a percentage (10%) of its "
                               "tasks with readable images, selected among the unannotated ones. Default 10%.")
@click.option("--state-dir", type=click.Path(file_okay=False), envvar="ACTIVEFT_BACKEND_STATE_DIR",
              help="Where the rankings are kept, so a restarted backend serves them at once (default "
                   "<cache dir>/labelstudio/backend). [env: ACTIVEFT_BACKEND_STATE_DIR]")
@click.option("--debounce", type=click.FloatRange(0), default=2.0, show_default=True, metavar="SECONDS",
              help="Re-rank once annotations have been quiet this long (a burst of labels gives one re-rank).")
@click.option("--max-delay", type=click.FloatRange(0), default=30.0, show_default=True, metavar="SECONDS",
              help="Re-rank at the latest this long after the first annotation of a burst.")
@click.option("--predict-wait", type=click.FloatRange(0), default=80.0, show_default=True, metavar="SECONDS",
              help="How long /predict waits for a project's first ranking (Label Studio gives up after 100 s).")
@click.option("--view", type=click.Choice(["score", "rank", "none"]), default="score", show_default=True,
              help="The Data Manager view 'ActiveFT priority': score: the selection ordered by prediction score "
                   "(no task data is written); rank: ordered by activeft_rank, written into the selected tasks as "
                   "`labelstudio select` does (one task update per changed rank, slower on large projects); none.")
@click.option("--basic-auth-user", envvar="BASIC_AUTH_USER", metavar="USER",
              help="Require HTTP basic auth with this user and the password in BASIC_AUTH_PASS (give both to "
                   "`activeft labelstudio connect`). [env: BASIC_AUTH_USER]")
@click.option("--dry-run", is_flag=True, help="Check the options, print the settings (never the key) and exit.")
@model_options
@common_options
@server_options
@friendly_errors
@guard_secrets
def serve_command(host, port, budget, selection, state_dir, debounce, max_delay, predict_wait, view, basic_auth_user,
                  dry_run, embedding, device, quiet, url, api_key):
    """Run ActiveFT as a Label Studio ML backend.

    Connect a project to it (`activeft labelstudio connect`, or Settings >
    Model > Connect model in Label Studio) and it ranks the whole project:
    it reads every task, embeds the images (cached), selects BUDGET tasks
    with ActiveFT and gives every task a prediction whose score is its
    priority (rank 1 lowest; tasks outside the selection after every
    selected one, annotated and unreadable ones last) under a model version
    of its own.  Sort the Data Manager by "Prediction score" (ascending), or
    use "Uncertainty sampling" (Enterprise), or the view "ActiveFT priority".

    When annotations are created, updated or deleted (Label Studio's
    webhooks), the annotated tasks become fixed centroids and the rest is
    re-ranked: after DEBOUNCE seconds of quiet, in the background, with a
    new model version whose predictions replace the old ones.  Each project
    has its own ranking; the last complete one is kept on disk and served
    at once after a restart.

    LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (or --url / --api-key) name
    the server the backend reads the projects from.  Label Studio 1.23 only
    connects backends on local or private addresses when it runs with
    ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false.  Stop it with
    Ctrl-C (or SIGTERM).

    \b
    Examples:
      activeft labelstudio serve --port 9090 --budget 10%
      activeft labelstudio connect --project 3 --backend-url http://127.0.0.1:9090
    """
    import json
    import subprocess
    import sys

    from ..budget import check_budget_form

    budget = budget or "10%"
    check_budget_form(budget)
    if device != "auto":
        from ..devices import resolve_device

        resolve_device(device)
    if max_delay < debounce:
        raise click.UsageError(f"--max-delay ({max_delay}) must be at least --debounce ({debounce})")
    url = (url or "").strip()
    if not url:
        raise InputError("no Label Studio URL given; pass --url (e.g. http://localhost:8080) or set LABEL_STUDIO_URL")
    if not url.startswith(("http://", "https://")):
        raise InputError(f"Label Studio URL {url!r} must start with http:// or https://")
    if not (api_key or "").strip():
        raise InputError("no Label Studio API key given; set LABEL_STUDIO_API_KEY (a personal access token or a "
                         "legacy token) or pass --api-key")
    if basic_auth_user and not os.environ.get("BASIC_AUTH_PASS"):
        raise InputError("--basic-auth-user needs the password in the environment variable BASIC_AUTH_PASS")
    settings = {"label_studio_url": url.rstrip("/"), "host": host, "port": port, "budget": str(budget),
                "selection": selection.as_kwargs(), "embedding": embedding.as_kwargs(), "device": device,
                "state_dir": os.path.abspath(state_dir) if state_dir else None, "debounce": debounce,
                "max_delay": max_delay, "predict_wait": predict_wait, "view": view, "quiet": quiet,
                "basic_auth_user": basic_auth_user}
    text = json.dumps(settings, sort_keys=True)
    if dry_run:
        say(text)
        return
    env = dict(os.environ, **{_BACKEND_SETTINGS_ENV: text, "LABEL_STUDIO_API_KEY": api_key.strip(),
                              "LABEL_STUDIO_URL": settings["label_studio_url"]})
    command = [sys.executable, "-m", "activeft_label.backend"]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(sys.executable, command, env)  # the server takes this process's place (same PID)
    sys.exit(subprocess.call(command, env=env))


@labelstudio.command("connect", context_settings=CONTEXT)
@click.option("--project", "-p", "project_id", required=True, type=int, metavar="ID",
              help="The project to connect (the number in its URL).")
@click.option("--backend-url", required=True, metavar="URL",
              help="Where `activeft labelstudio serve` listens, as Label Studio reaches it (e.g. "
                   "http://127.0.0.1:9090).")
@click.option("--title", default="ActiveFT", show_default=True, help="Name of the model in Settings > Model.")
@click.option("--basic-auth-user", envvar="BASIC_AUTH_USER", metavar="USER",
              help="The backend's basic auth user; the password comes from BASIC_AUTH_PASS. [env: BASIC_AUTH_USER]")
@server_options
@friendly_errors
@guard_secrets
def connect_command(project_id, backend_url, title, basic_auth_user, url, api_key):
    """Connect a project to a running ActiveFT ML backend.

    The same as Settings > Model > Connect model in Label Studio (the SDK's
    ml.create): Label Studio checks the backend's /health and /setup, adds
    the webhook that tells it about new annotations, and the backend starts
    ranking the project.  A project already connected to this URL is left
    as it is (running the command again changes nothing).

    \b
    Example:
      activeft labelstudio connect --project 3 --backend-url http://127.0.0.1:9090
    """
    from ..connectors.labelstudio import connect, get_project

    backend_url = _check_backend_url(backend_url)
    conn = connect(url, api_key)
    with conn:
        project = get_project(conn, project_id)
        connected = _connect_backend(conn, project["id"], backend_url, title=title, user=basic_auth_user)
    _say_connected(connected, project["id"], backend_url, project.get("title"))


def _check_backend_url(backend_url):
    import urllib.parse

    backend_url = (backend_url or "").strip().rstrip("/")
    parts = urllib.parse.urlsplit(backend_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"--backend-url {backend_url!r} must be an http(s) URL with a host, e.g. "
                         f"http://127.0.0.1:9090")
    return backend_url


def _plain(obj):
    if isinstance(obj, dict):
        return obj
    return obj.model_dump() if hasattr(obj, "model_dump") else obj.dict()


def _ml_call(conn, what, fn, **kwargs):
    """An SDK call of the ML backend API; its refusal as one line (the key scrubbed), with the likely fix."""
    import re

    from label_studio_sdk.core.api_error import ApiError

    try:
        return fn(**kwargs)
    except ApiError as exc:
        body = exc.body
        if isinstance(body, dict):
            detail = body.get("validation_errors") or body.get("detail") or body
        else:
            detail = body
        messages = []

        def collect(value):
            if isinstance(value, dict):
                for item in value.values():
                    collect(item)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    collect(item)
            elif value:
                messages.append(str(value))

        collect(detail)
        text = re.sub(r"<[^>]+>", "", " ".join(" ".join(messages).split()))  # Label Studio's HTML links
        text = conn.scrub(text)[:600] or "no details"
        hint = ""
        low = text.lower()
        if "reserved network" in low or "not allowed" in low:
            hint = ("; Label Studio refuses ML backends on local or private addresses unless it runs with "
                    "ML_BLOCK_LOCAL_IP=false (and SSRF_PROTECTION_ENABLED=false, for the webhook)")
        elif "health check failed" in low:
            hint = "; is `activeft labelstudio serve` running there, and can the Label Studio server reach it?"
        raise InputError(f"Label Studio refused to {what} (HTTP {exc.status_code}: {text}){hint}") from None


def _backend_says(backend_url, project_id):
    """The backend's own account of a project's problem (its /health), or None when it cannot be asked."""
    import httpx

    auth = None
    if os.environ.get("BASIC_AUTH_USER") and os.environ.get("BASIC_AUTH_PASS"):
        auth = (os.environ["BASIC_AUTH_USER"], os.environ["BASIC_AUTH_PASS"])
    try:
        answer = httpx.get(f"{backend_url}/health", timeout=3, auth=auth).json()
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(answer, dict):
        return None
    entry = (answer.get("projects") or {}).get(str(project_id)) or {}
    return entry.get("error") or (answer.get("error") if answer.get("status") != "UP" else None)


def _connect_backend(conn, project_id, backend_url, title="ActiveFT", user=None):
    """Connect ``project_id`` to the backend at ``backend_url`` (once); returns (ML backend dict, created)."""
    existing = [_plain(m) for m in _ml_call(conn, f"list the ML backends of project {project_id}", conn.client.ml.list,
                                            project=int(project_id))]
    for ml in existing:
        if str(ml.get("url") or "").rstrip("/") == backend_url:
            return ml, False
    kwargs = {"project": int(project_id), "url": backend_url, "title": title, "is_interactive": False,
              "description": "ActiveFT: ranks the project's tasks for annotation (activeft labelstudio serve)"}
    user = user or os.environ.get("BASIC_AUTH_USER")
    if user:
        password = os.environ.get("BASIC_AUTH_PASS")
        if not password:
            raise InputError("--basic-auth-user needs the password in the environment variable BASIC_AUTH_PASS")
        kwargs.update(auth_method="BASIC_AUTH", basic_auth_user=user, basic_auth_pass=password)
    try:
        ml = _ml_call(conn, f"connect project {project_id} to the ML backend at {backend_url}",
                      conn.client.ml.create, **kwargs)
    except InputError as exc:
        reason = _backend_says(backend_url, project_id) if "/setup" in str(exc) or "/health" in str(exc) else None
        if reason:
            raise InputError(f"{exc}; the backend says: {conn.scrub(reason)}") from None
        raise
    return _plain(ml), True


def _say_connected(connected, project_id, backend_url, title=None):
    ml, created = connected
    name = f" ({title})" if title else ""
    verb = "Connected" if created else "Already connected:"
    say(f"{verb} project {project_id}{name} to the ActiveFT ML backend at {backend_url} (ML backend {ml.get('id')}, "
        f"model version {ml.get('model_version') or 'none yet'}).")
    if ml.get("state") == "ER" or ml.get("error_message"):
        say(f"Warning: Label Studio reports the backend in error: {ml.get('error_message')}", err=True)
    say("The backend ranks the project now: each task gets a prediction whose score is its priority (sort the Data "
        "Manager by 'Prediction score', ascending, or open the view 'ActiveFT priority'); annotations re-rank the "
        "rest.")


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
