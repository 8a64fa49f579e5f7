"""Start and stop a real Label Studio server for the tests and benchmarks.

:class:`LabelStudioServer` runs ``label-studio start`` (the ``label_studio``
package's own entry point, in this interpreter) on 127.0.0.1 and a free port,
with a fresh ``--data-dir`` of its own, waits until ``/health`` answers, and
provides both kinds of API key:

* ``legacy_token`` — the organisation's legacy token, set through
  ``LABEL_STUDIO_USER_TOKEN`` with ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true``
  (which only takes effect when the organisation is created, i.e. on the first
  start of a data dir);
* ``personal_token`` — a personal access token (a JWT refresh token, the
  default kind in new organisations), created through the API.

A fresh data dir starts with an empty database that has every migration
applied: the migrations (about 80 s of CPU, most of a fresh start) run once
per Label Studio version into a template database under
``~/.cache/activeft-label/labelstudio-template/`` (``ACTIVEFT_LS_TEMPLATE_DIR``
to move it), which every new data dir copies.  The template holds no user,
organisation or token, so each server still creates its own on first start.
Pass ``template_dir=False`` to migrate from scratch.

The server process gets an explicit, minimal environment (Label Studio's
settings also read bare ``USERNAME``/``PASSWORD`` variables, so the caller's
environment is not passed on).  It runs in a session of its own and is
stopped by its process id (the whole process group it leads, nothing else).
Local-files serving is enabled with ``local_files_root`` as the document root.

Run this file directly to start a server by hand::

    python tests/labelstudio_server.py /tmp/ls-root
"""

import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

__all__ = ["LabelStudioServer", "free_port"]

#: Seconds allowed for a fresh server to answer /health (~25 s measured on 2 cores, more when the machine is busy).
START_TIMEOUT = 240


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


DATABASE_FILE = "label_studio.sqlite3"


def _base_environment(home):
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": home,
        "PYTHONUNBUFFERED": "1",
        "DJANGO_DB": "sqlite",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "HF_HUB_OFFLINE": "1",
    }


def default_template_dir():
    """``ACTIVEFT_LS_TEMPLATE_DIR``, else ``~/.cache/activeft-label/labelstudio-template``."""
    if os.environ.get("ACTIVEFT_LS_TEMPLATE_DIR"):
        return os.environ["ACTIVEFT_LS_TEMPLATE_DIR"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "activeft-label", "labelstudio-template")


def migrated_template(template_dir, timeout=900):
    """Path of an empty, fully migrated database for this Label Studio version (built once, under a lock)."""
    from importlib.metadata import version

    key = f"label-studio-{version('label-studio')}-django-{version('django')}"
    folder = os.path.join(template_dir, key)
    target = os.path.join(folder, DATABASE_FILE)
    if os.path.exists(target):
        return target
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building it
        if os.path.exists(target):
            return target
        work = tempfile.mkdtemp(prefix="build-", dir=folder)
        try:
            env = _base_environment(os.path.join(work, "home"))
            env["LABEL_STUDIO_BASE_DATA_DIR"] = os.path.join(work, "data")
            os.makedirs(env["HOME"])
            code = ("from label_studio.server import _setup_env, _apply_database_migrations\n"
                    "_setup_env()\n_apply_database_migrations()\n")
            done = subprocess.run([sys.executable, "-c", code], env=env, cwd=work, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
            built = os.path.join(work, "data", DATABASE_FILE)
            if done.returncode != 0 or not os.path.exists(built):
                raise RuntimeError("could not migrate a Label Studio template database:\n"
                                   + done.stdout.decode("utf-8", "replace")[-3000:])
            os.replace(built, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def _die_with_parent():
    """In the child, before exec: get SIGTERM when the process that started the server dies (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


class LabelStudioServer:
    """A Label Studio server of our own, for tests.

    Parameters
    ----------
    base_dir : str
        Folder for everything the server writes: ``data/`` (its ``--data-dir``),
        ``home/`` and ``server.log``.  It should be fresh (a tmp folder).
    local_files_root : str, optional
        Document root for local-files serving (``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``);
        default ``base_dir/files``.
    port : int, optional
        Default: a free port.
    template_dir : str or False, optional
        Where the migrated template database is kept (see above); ``False``: none.

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:PORT``.
    email, password : str
        The admin account.
    legacy_token : str
        Legacy API token (40 hex characters).
    personal_token : str
        Personal access token, set by :meth:`start`.
    pid : int or None
        Process id of the server while it runs.
    """

    def __init__(self, base_dir, local_files_root=None, port=None, template_dir=None):
        self.base_dir = os.path.abspath(base_dir)
        self.data_dir = os.path.join(self.base_dir, "data")
        self.local_files_root = os.path.abspath(local_files_root or os.path.join(self.base_dir, "files"))
        self.log_path = os.path.join(self.base_dir, "server.log")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.email = "admin@activeft.test"
        self.password = secrets.token_hex(12)
        self.legacy_token = secrets.token_hex(20)
        # Label Studio signs personal access tokens (JWTs) with SECRET_KEY.  Left to itself it generates one when
        # its data dir's .env has none, and was seen here to generate a new one on a restart (the token was then
        # refused: "Token is invalid"), so each server keeps one key across its restarts.
        self.secret_key = secrets.token_urlsafe(50)
        self.personal_token = None
        self.template_dir = default_template_dir() if template_dir is None else template_dir
        self.pid = None
        self._process = None
        self._log = None

    # ----------------------------------------------------------------------------------------------------------
    def environment(self):
        """The complete environment of the server process (nothing inherited but PATH and locale)."""
        home = os.path.join(self.base_dir, "home")
        os.makedirs(home, exist_ok=True)
        return {
            **_base_environment(home),
            "LABEL_STUDIO_USERNAME": self.email,
            "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.legacy_token,
            "SECRET_KEY": self.secret_key,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": self.local_files_root,
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        }

    def start(self, timeout=START_TIMEOUT):
        """Start (or restart) the server, wait for /health, create a personal access token once; returns self."""
        os.makedirs(self.data_dir, exist_ok=True)
        os.makedirs(self.local_files_root, exist_ok=True)
        database = os.path.join(self.data_dir, DATABASE_FILE)
        if self.template_dir and not os.path.exists(database):
            shutil.copyfile(migrated_template(self.template_dir), database)
        self._log = open(self.log_path, "ab")
        command = [sys.executable, "-m", "label_studio.server", "start", "--no-browser", "--host", "127.0.0.1",
                   "--port", str(self.port), "--data-dir", self.data_dir]
        self._process = subprocess.Popen(command, env=self.environment(), cwd=self.base_dir, stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        self.pid = self._process.pid
        try:
            self._wait_healthy(timeout)
            if self.personal_token is None:  # a restart keeps the token (the server allows one per user)
                self.personal_token = self._create_personal_token()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Label Studio exited with status {self._process.returncode} before it was up; "
                                   f"see {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if json.loads(response.read().decode()).get("status") == "UP":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Label Studio did not answer /health within {timeout} s; see {self.log_path}:\n"
                           f"{self.log_tail()}")

    def _create_personal_token(self):
        """Create a personal access token (POST /api/token/), authenticated with the legacy token."""
        request = urllib.request.Request(self.url + "/api/token/", data=b"{}", method="POST", headers={
            "Authorization": f"Token {self.legacy_token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            token = json.loads(response.read().decode())["token"]
        if token.count(".") != 2:
            raise RuntimeError("Label Studio returned a personal access token that is not a JWT")
        return token

    def log_tail(self, chars=4000):
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - chars))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout=20):
        """Stop the server: SIGTERM to the process group it leads, then SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            pgid = process.pid  # start_new_session=True: the server leads its own process group
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(10)
        if process is not None:
            # Children of the server that outlived it (none are expected) go with their group.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        self.pid = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":  # pragma: no cover - manual use
    base = sys.argv[1] if len(sys.argv) > 1 else os.path.join("/tmp", f"labelstudio-{os.getpid()}")
    server = LabelStudioServer(base).start()
    print(json.dumps({"url": server.url, "pid": server.pid, "legacy_token": server.legacy_token,
                      "personal_token": server.personal_token, "local_files_root": server.local_files_root}))
    sys.stdout.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        server.stop()
