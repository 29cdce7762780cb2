"""A fake Kaggle API for tests: a real HTTP server the real ``kaggle`` client talks to.

With ``KAGGLE_API_ENVIRONMENT=TEST`` kagglesdk sends every call to ``http://localhost:7777`` (the port is
fixed in ``kagglesdk/kaggle_env.py``) as ``POST /api/v1/<service>/<method>`` with a JSON body, and reads
JSON back; errors are JSON ``{"code": N, "message": ...}`` with the same HTTP status. Emulated here:

* ``POST /api/v1/security.OAuthService/IntrospectToken`` - ``{"token"}`` -> ``{"active", "username"}``
  (how the client validates ``KAGGLE_API_TOKEN``)
* ``POST /api/v1/datasets.DatasetApiService/GetDataset`` - ``{"ownerSlug", "datasetSlug"}`` -> ApiDataset
  (title, currentVersionNumber, licenseName, ...)
* ``POST /api/v1/datasets.DatasetApiService/DownloadDataset`` - same body -> ``302`` to a signed-URL
  style ``/storage/...`` address, like the real service redirecting to cloud storage
* ``GET /storage/<owner>/<slug>/<slug>.zip`` - the archive bytes with Content-Length and Last-Modified

Dataset calls need HTTP Basic auth (``username:key``, the legacy API key) or ``Bearer <token>``; anything
else gets 401. Unknown datasets get 404.
"""

from __future__ import annotations

import base64
import errno
import io
import json
import socket
import threading
import zipfile
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

HOST = "127.0.0.1"
PORT = 7777  # kagglesdk's KaggleEnv.TEST endpoint is http://localhost:7777
SERVICE = "/api/v1/datasets.DatasetApiService/"
INTROSPECT = "/api/v1/security.OAuthService/IntrospectToken"


def tiny_jpeg(seed: int = 0, size: int = 64) -> bytes:
    """A small grayscale JPEG whose pixels depend on ``seed`` (so different seeds give different bytes)."""
    image = Image.new("L", (size, size))
    image.putdata([(x * 7 + y * 3 + seed * 31) % 256 for y in range(size) for x in range(size)])
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def tiny_png(seed: int = 0, size: int = 64) -> bytes:
    """A small grayscale PNG."""
    image = Image.new("L", (size, size), color=seed % 256)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def kaggle_layout_files(per_group: int = 3) -> dict[str, bytes]:
    """Member name -> bytes in the Kaggle chest-xray-pneumonia layout, with its nested duplicate copy,
    a ``__MACOSX`` resource fork and a non-image file."""
    files: dict[str, bytes] = {}
    seed = 0
    for split in ("train", "test", "val"):
        for label in ("NORMAL", "PNEUMONIA"):
            for index in range(per_group):
                seed += 1
                if label == "NORMAL":
                    name = f"IM-{seed:04d}-0001.jpeg"
                else:
                    name = f"person{seed}_{'virus' if index % 2 else 'bacteria'}_{index + 6}.jpeg"
                data = tiny_jpeg(seed)
                files[f"chest_xray/{split}/{label}/{name}"] = data
                if split == "train" and index == 0:
                    files[f"chest_xray/chest_xray/{split}/{label}/{name}"] = data
    files["__MACOSX/chest_xray/train/NORMAL/._IM-0001-0001.jpeg"] = b"\x00\x05\x16\x07mac resource fork"
    files["chest_xray/train/NORMAL/.DS_Store"] = b"\x00\x00\x00\x01Bud1"
    files["chest_xray/README.txt"] = b"not an image"
    return files


def make_zip(files: dict[str, bytes]) -> bytes:
    """A zip holding ``files`` (member names written verbatim, even unsafe ones)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, (2024, 1, 2, 3, 4, 5)), data)
    return buffer.getvalue()


def port_is_free(host: str = HOST, port: int = PORT) -> bool:
    """True when nothing listens on host:port (so the fake can bind it, or a client gets refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


class FakeKaggle:
    """The fake server: one dataset, one set of valid credentials, and a log of the requests it served."""

    def __init__(
        self,
        archive: bytes,
        owner: str = "paultimothymooney",
        slug: str = "chest-xray-pneumonia",
        username: str = "xray-tester",
        key: str = "k3y-0123456789abcdef",
        token: str = "KGAT_fake_token_0123456789",
        title: str = "Chest X-Ray Images (Pneumonia)",
        version: int = 2,
        license_name: str = "CC BY 4.0",
    ):
        self.archive = archive
        self.owner, self.slug = owner, slug
        self.username, self.key, self.token = username, key, token
        self.title, self.version, self.license_name = title, version, license_name
        self.requests: list[tuple[str, str, str]] = []  # (method, path, auth kind)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> FakeKaggle:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                fake._post(self)

            def do_GET(self):
                fake._get(self)

        self._server = ThreadingHTTPServer((HOST, PORT), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-kaggle",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> FakeKaggle:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]

    # -- protocol -----------------------------------------------------------------------------------------
    def _auth_kind(self, handler: BaseHTTPRequestHandler) -> str:
        header = handler.headers.get("Authorization", "")
        if header.startswith("Basic "):
            expected = base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
            return "basic" if header[6:] == expected else "bad"
        if header.startswith("Bearer "):
            return "bearer" if header[7:] == self.token else "bad"
        return "none"

    @staticmethod
    def _json(handler: BaseHTTPRequestHandler, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        try:
            body = json.loads(handler.rfile.read(length) or b"{}")
        except ValueError:
            body = {}
        auth = self._auth_kind(handler)
        self.requests.append(("POST", handler.path, auth))
        if handler.path == INTROSPECT:
            if body.get("token") == self.token:
                self._json(handler, 200, {"active": True, "username": self.username,
                                          "scope": "resources.admin:*"})
            else:
                self._json(handler, 200, {"active": False})
            return
        if not handler.path.startswith(SERVICE):
            self._json(handler, 404, {"code": 404, "message": f"no such method {handler.path}"})
            return
        if auth not in ("basic", "bearer"):
            self._json(handler, 401, {"code": 401, "message": "Unauthenticated"})
            return
        if (body.get("ownerSlug"), body.get("datasetSlug")) != (self.owner, self.slug):
            self._json(handler, 404, {"code": 404, "message": "Dataset not found"})
            return
        method = handler.path[len(SERVICE):]
        if method == "GetDataset":
            self._json(handler, 200, {
                "id": 17810,
                "ref": f"{self.owner}/{self.slug}",
                "title": self.title,
                "subtitle": "5,863 images, 2 categories",
                "ownerName": "Paul Mooney",
                "ownerRef": self.owner,
                "url": f"https://www.kaggle.com/datasets/{self.owner}/{self.slug}",
                "licenseName": self.license_name,
                "currentVersionNumber": self.version,
                "totalBytes": len(self.archive),
                "lastUpdated": "2018-03-24T19:41:59.187Z",
                "isPrivate": False,
            })
        elif method == "DownloadDataset":
            handler.send_response(302)
            location = f"/storage/{self.owner}/{self.slug}/{self.slug}.zip?X-Goog-Signature=fake"
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        else:
            self._json(handler, 404, {"code": 404, "message": f"method {method} not emulated"})

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        self.requests.append(("GET", handler.path, self._auth_kind(handler)))
        if handler.path.split("?")[0] != f"/storage/{self.owner}/{self.slug}/{self.slug}.zip":
            self._json(handler, 404, {"code": 404, "message": "no such object"})
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/zip")
        handler.send_header("Content-Length", str(len(self.archive)))
        handler.send_header("Last-Modified", formatdate(usegmt=True))
        handler.end_headers()
        handler.wfile.write(self.archive)
