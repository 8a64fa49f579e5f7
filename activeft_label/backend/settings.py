"""The backend's settings: one object, built by ``activeft labelstudio serve`` and handed to the server process.

The command line checks the options and starts ``python -m activeft_label.backend``
in its own place (``exec``), with the settings as JSON in the environment
variable :data:`SETTINGS_ENV` and the Label Studio key in
``LABEL_STUDIO_API_KEY`` (the environment, not the command line: arguments
show in the process list).
"""

import json
import os
from dataclasses import asdict, dataclass, field

from ..errors import InputError

#: Environment variable that carries the settings (JSON) into the server process.
SETTINGS_ENV = "ACTIVEFT_BACKEND_SETTINGS"
#: The kinds of priority view the backend keeps (see :class:`Settings`).
VIEWS = ("score", "rank", "none")


@dataclass
class Settings:
    """What the backend serves and how.

    Attributes
    ----------
    host, port : str, int
        Where it listens.
    label_studio_url : str
        The Label Studio server whose projects it ranks (``LABEL_STUDIO_URL``).
    budget : str
        Tasks to select per project: a count or a percentage of the project's
        readable tasks (annotated ones included), selected among the
        unannotated ones.
    selection : dict
        Keyword arguments of :func:`activeft_label.selection.select`, ``method`` included.
    embedding : dict
        Keyword arguments of the embedding (model, pretrained, batch_size, num_workers, cache_dir, precision).
    device : str
    state_dir : str or None
        Where rankings are kept (default ``<cache dir>/labelstudio/backend``).
    debounce : float
        Seconds of quiet after the last annotation event before a re-rank.
    max_delay : float
        A re-rank starts at the latest this many seconds after the first event of a burst.
    predict_wait : float
        How long ``/predict`` waits for a project's first ranking (Label Studio gives up after 100 s).
    settle : float
        Seconds after a ``/predict`` answer before the backend checks that Label Studio stored one
        prediction per task.
    view : {"score", "rank", "none"}
        The "ActiveFT priority" view: ordered by prediction score, showing the
        selection (``score``: no task is written); ordered by ``activeft_rank``,
        written into the selected tasks as ``labelstudio select`` does (``rank``:
        one task update per changed rank); or none.
    quiet : bool
        Log warnings and errors only.
    basic_auth_user : str or None
        With ``BASIC_AUTH_PASS`` in the environment: requests need HTTP basic auth.
    """

    label_studio_url: str = ""
    host: str = "127.0.0.1"
    port: int = 9090
    budget: str = "10%"
    selection: dict = field(default_factory=lambda: {"method": "activeft"})
    embedding: dict = field(default_factory=dict)
    device: str = "auto"
    state_dir: str = None
    debounce: float = 2.0
    max_delay: float = 30.0
    predict_wait: float = 80.0
    settle: float = 5.0
    view: str = "score"
    quiet: bool = False
    basic_auth_user: str = None

    def check(self):
        """Raise InputError for settings the server cannot run with."""
        if not self.label_studio_url:
            raise InputError("no Label Studio URL given; pass --url or set LABEL_STUDIO_URL")
        if not 0 < int(self.port) < 65536:
            raise InputError(f"--port must lie in 1..65535, got {self.port}")
        if self.debounce < 0 or self.max_delay < self.debounce:
            raise InputError(f"need 0 <= --debounce <= --max-delay, got {self.debounce} and {self.max_delay}")
        if self.predict_wait < 0:
            raise InputError(f"--predict-wait must be >= 0, got {self.predict_wait}")
        if self.view not in VIEWS:
            raise InputError(f"view must be one of {', '.join(VIEWS)}, got {self.view!r}")
        if "method" not in self.selection:
            raise InputError("the selection settings name no method")
        from ..budget import check_budget_form

        check_budget_form(self.budget)
        return self

    def state_base(self):
        """The folder the state folders of every Label Studio server live in."""
        if self.state_dir:
            return os.path.abspath(self.state_dir)
        from ..embeddings import default_cache_dir

        cache = self.embedding.get("cache_dir")
        return os.path.join(cache if isinstance(cache, str) and cache else default_cache_dir(), "labelstudio",
                            "backend")

    def to_json(self):
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        try:
            values = json.loads(text)
            known = set(cls.__dataclass_fields__)
            unknown = set(values) - known
            if unknown:
                raise InputError(f"unknown backend settings: {', '.join(sorted(unknown))}")
            return cls(**values).check()
        except (ValueError, TypeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{SETTINGS_ENV} does not hold backend settings ({exc})") from None

    @classmethod
    def from_environment(cls, environ=None):
        environ = os.environ if environ is None else environ
        text = environ.get(SETTINGS_ENV)
        if not text:
            raise InputError(f"no backend settings: start the backend with `activeft labelstudio serve` "
                             f"({SETTINGS_ENV} is not set)")
        return cls.from_json(text)
