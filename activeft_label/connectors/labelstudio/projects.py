"""Projects: finding, creating and checking them, and the label configs this connector writes."""

import re
from xml.sax.saxutils import quoteattr

from ...errors import InputError
from ._http import as_dict, call_sdk
from .fields import IMAGE_FIELD


def project_url(conn, project_id, view_id=None):
    """Browser URL of a project (of its Data Manager tab ``view_id`` when given)."""
    base = f"{conn.url}/projects/{int(project_id)}"
    return f"{base}/data?tab={int(view_id)}" if view_id is not None else base


def get_project(conn, project_id):
    """The project as a dict (``id``, ``title``, ``label_config``, ``sampling``, ``model_version``, ...)."""
    try:
        project_id = int(project_id)
    except (TypeError, ValueError):
        raise InputError(f"project id must be a whole number, got {project_id!r}") from None
    if project_id <= 0:
        raise InputError(f"project id must be a whole number above 0, got {project_id}")
    not_found = (f"Label Studio at {conn.url} has no project {project_id} that the API key's user can see; "
                 f"the id is the number in the project's URL ({conn.url}/projects/ID)")
    project = call_sdk(conn, f"read project {project_id}", conn.client.projects.get, id=project_id, not_found=not_found)
    return as_dict(project)


def find_project(conn, title):
    """The projects titled exactly ``title`` (a list of dicts, oldest first)."""
    pager = call_sdk(conn, "list projects", conn.client.projects.list, title=title, page_size=100)
    found = []
    for project in call_sdk(conn, "list projects", list, pager):
        project = as_dict(project)
        if project.get("title") == title:
            found.append(project)
    return sorted(found, key=lambda p: p["id"])


def parse_labels(labels):
    """Split ``"a,b,c"`` (or a list) into label names; InputError on none, empty or duplicate names."""
    if isinstance(labels, str):
        labels = labels.split(",")
    names = [str(name).strip() for name in labels or ()]
    if not names or any(not name for name in names):
        raise InputError("--labels must list label names separated by commas, like 'cat,dog,bird' "
                         "(no empty names)")
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(f"label {name!r} is listed twice in --labels")
        seen.add(name)
    return names


def label_config(labels, task="classification"):
    """Label Studio labeling config for images: Choices (classification) or RectangleLabels (detection)."""
    names = parse_labels(labels)
    if task == "classification":
        control, item, extra = "Choices", "Choice", ' choice="single" showInline="true"'
    elif task == "detection":
        control, item, extra = "RectangleLabels", "Label", ""
    else:
        raise InputError(f"task must be 'classification' or 'detection', got {task!r}")
    items = "\n".join(f"    <{item} value={quoteattr(name)}/>" for name in names)
    return (f'<View>\n  <Image name="{IMAGE_FIELD}" value="${IMAGE_FIELD}"/>\n'
            f'  <{control} name="label" toName="{IMAGE_FIELD}"{extra}>\n{items}\n  </{control}>\n</View>\n')


#: Label Studio's bounds on a project title (PROJECT_TITLE_MIN_LEN / _MAX_LEN of its settings).
TITLE_LENGTH = (3, 50)


def check_title(title):
    """Raise :class:`InputError` for a project title Label Studio would refuse (only after the embedding)."""
    low, high = TITLE_LENGTH
    if not isinstance(title, str) or len(title.strip()) < low:
        raise InputError(f"project title {title!r} is too short; Label Studio needs at least {low} characters "
                         f"(--title)")
    if len(title) > high:
        raise InputError(f"project title {title[:20]!r}... has {len(title)} characters; Label Studio takes at most "
                         f"{high} (--title)")


def create_project(conn, title, config, description=""):
    """Create a project on "Sequential sampling"; returns it as a dict."""
    check_title(title)
    project = call_sdk(conn, f"create project {title!r}", conn.client.projects.create, title=title, label_config=config,
                       description=description, sampling="Sequential sampling", retry=False)
    project = as_dict(project)
    if project.get("sampling") != "Sequential sampling":
        call_sdk(conn, "set sequential sampling", conn.client.projects.update, id=project["id"],
                 sampling="Sequential sampling")
    return project


def open_project(conn, title, labels, task="classification", description=""):
    """The project titled ``title`` with the label config of ``labels``/``task``, created when there is none.

    A project with this exact title and the same label config is reused (so
    a command can be re-run after a failure); one with another config is an
    :class:`InputError`.  Returns the project as a dict.
    """
    check_title(title)
    config = label_config(labels, task)
    existing = find_project(conn, title)
    if existing:
        project = existing[0]
        if not has_label_config(project, labels, task):
            raise InputError(f"a project titled {title!r} already exists ({project_url(conn, project['id'])}) with "
                             f"another label config; choose another --title")
        return project
    return create_project(conn, title, config, description=description)


def has_label_config(project, labels, task="classification"):
    """Whether ``project``'s label config is the one :func:`label_config` makes of ``labels``/``task`` (whitespace
    aside)."""
    return normalize_config(project.get("label_config")) == normalize_config(label_config(labels, task))


def normalize_config(config):
    return re.sub(r"\s+", "", config or "")
