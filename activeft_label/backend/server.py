"""Running the backend: logging (the key scrubbed from every line), the backend, uvicorn."""

import logging
import os
import sys

from ..errors import InputError
from .settings import Settings

log = logging.getLogger("activeft.backend")


class Scrubber(logging.Filter):
    """Blanks secrets out of every log record (the API key; the access token Label Studio sends to /setup is
    never logged at all)."""

    def __init__(self, secrets):
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 8]

    def filter(self, record):
        if self.secrets:
            message = record.getMessage()
            clean = message
            for secret in self.secrets:
                clean = clean.replace(secret, "***")
            if clean != message:
                record.msg, record.args = clean, ()
        return True


def configure_logging(quiet=False, secrets=()):
    """One line per event on stderr: time, level, message."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(Scrubber(secrets))
    for name in ("activeft.backend", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.WARNING if quiet else logging.INFO)
    return handler


def serve(settings, api_key=None, basic_auth=None):
    """Serve the backend until interrupted (SIGINT / SIGTERM); blocks.

    ``api_key`` defaults to ``LABEL_STUDIO_API_KEY``; ``basic_auth`` to
    ``(BASIC_AUTH_USER, BASIC_AUTH_PASS)`` when both are set.
    """
    import uvicorn

    from ..devices import process_tuning
    from .app import create_app
    from .service import Backend

    settings.check()
    api_key = api_key if api_key is not None else os.environ.get("LABEL_STUDIO_API_KEY", "")
    if basic_auth is None:
        user = settings.basic_auth_user or os.environ.get("BASIC_AUTH_USER")
        password = os.environ.get("BASIC_AUTH_PASS")
        if user and password:
            basic_auth = (user, password)
        elif user or password:
            raise InputError("basic auth needs both BASIC_AUTH_USER and BASIC_AUTH_PASS")
    configure_logging(settings.quiet, [api_key, basic_auth[1] if basic_auth else ""])
    backend = Backend(settings, api_key)
    app = create_app(backend, basic_auth=basic_auth)
    log.info("ActiveFT ML backend for %s on http://%s:%s (budget %s, method %s, state in %s)",
             settings.label_studio_url, settings.host, settings.port, settings.budget,
             settings.selection.get("method"), backend.folder)
    config = uvicorn.Config(app, host=settings.host, port=int(settings.port), log_config=None, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5)
    with process_tuning():  # this process is the backend's alone
        uvicorn.Server(config).run()


def main():
    """``python -m activeft_label.backend``: serve with the settings of ``ACTIVEFT_BACKEND_SETTINGS``."""
    from ..errors import ActiveFTError

    try:
        settings = Settings.from_environment()
        serve(settings)
    except ActiveFTError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
