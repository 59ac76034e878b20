"""The runner's exit codes, its error type, and ComfyUI's HTTP API through ``requests``
(``Client``: one server, reusable for many prompts)."""
from __future__ import annotations

import json
import mimetypes
import urllib.parse
import uuid
from pathlib import Path

import requests

EXIT_OK, EXIT_USAGE, EXIT_SERVER, EXIT_MISSING, EXIT_REJECTED, EXIT_FAILED, EXIT_TIMEOUT = 0, 2, 3, 4, 5, 6, 7
EXIT_INTERRUPTED = 130   # Ctrl-C, as a shell reports it


class RunnerError(Exception):
    """A failure the runner reports in one line and exits with ``code``."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def json_or_text(raw: bytes):
    """A response body as JSON, or as text when it is not JSON."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode("utf-8", "replace")


def unused_path(path: Path) -> Path:
    """``path``, or ``name_2.ext``, ``name_3.ext``, ... when it exists."""
    n = 2
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        n += 1
    return candidate


class Client:
    """One ComfyUI server: its address, a ``client_id`` for its websocket, and a session."""

    def __init__(self, server: str, timeout: float = 30.0, upload_cache: dict | None = None):
        server = server.strip().rstrip("/")
        if "://" not in server:
            server = "http://" + server
        self.base = server
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex
        self.session = requests.Session()
        # (local file, size, mtime, subfolder) -> its name on the server: a batch uploads once
        self.upload_cache = {} if upload_cache is None else upload_cache
        # A batch keeps same-named different files apart: ComfyUI then reuses an identical
        # file of that name or picks "name (2).ext".
        self.overwrite_uploads = upload_cache is None

    @property
    def ws_url(self) -> str:
        scheme = "wss" if self.base.startswith("https") else "ws"
        return f"{scheme}://{self.base.split('://', 1)[1]}/ws?clientId={self.client_id}"

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            return self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise RunnerError(EXIT_SERVER, f"cannot reach ComfyUI at {self.base} ({exc.__class__.__name__}). Is it "
                                           f"running? Start it with 'python main.py --listen 127.0.0.1 --port "
                                           f"{urllib.parse.urlsplit(self.base).port or 8188}' or pass --server "
                                           "host:port.") from None

    def get_json(self, path: str):
        r = self._request("GET", path)
        r.raise_for_status()
        return r.json()

    def post_json(self, path: str, payload) -> tuple[int, object]:
        r = self._request("POST", path, json=payload)
        return r.status_code, json_or_text(r.content)

    def system_stats(self) -> dict:
        """``/system_stats``; the runner's error when something else answers there."""
        try:
            return self.get_json("/system_stats")
        except requests.HTTPError as e:
            raise RunnerError(EXIT_SERVER, f"{self.base} answered HTTP {e.response.status_code} on /system_stats: "
                                           "is this ComfyUI?") from None
        except ValueError:   # a 200 that is not JSON: some other web server
            raise RunnerError(EXIT_SERVER, f"{self.base} answered /system_stats with something that is not "
                                           "JSON: is this ComfyUI?") from None

    def upload(self, path: Path, subfolder: str = "") -> str:
        """Upload a local file into ComfyUI's input folder; returns the name to use in a widget.
        A file this client (or its batch) already uploaded, unchanged, is not sent again."""
        st = path.stat()
        cache_key = (str(path.resolve()), st.st_size, st.st_mtime_ns, subfolder)
        if cache_key in self.upload_cache:
            return self.upload_cache[cache_key]
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with open(path, "rb") as fh:
            r = self._request("POST", "/upload/image", files={"image": (path.name, fh, ctype)},
                              data={"type": "input", "subfolder": subfolder,
                                    **({"overwrite": "true"} if self.overwrite_uploads else {})})
        if r.status_code != 200:
            raise RunnerError(EXIT_FAILED, f"upload of {path} failed: HTTP {r.status_code} {r.content[:200]!r}")
        info = r.json()
        name = info["name"]
        self.upload_cache[cache_key] = f"{info['subfolder']}/{name}" if info.get("subfolder") else name
        return self.upload_cache[cache_key]

    def download(self, entry: dict, dest_dir: Path, overwrite: bool = True) -> Path:
        """Download one output file (an entry of a history output) into ``dest_dir``; with
        ``overwrite=False`` an existing file there is kept and the download gets a new name."""
        params = {"filename": entry["filename"], "subfolder": entry.get("subfolder", ""),
                  "type": entry.get("type", "output")}
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / entry["filename"]
        if not overwrite:
            dest = unused_path(dest)
        with self._request("GET", "/view", params=params, stream=True) as r:
            r.raise_for_status()
            with open(dest, "wb") as f:
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
        return dest

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Ask the server to stop ``prompt_id`` (or whatever it is running)."""
        self.post_json("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})
