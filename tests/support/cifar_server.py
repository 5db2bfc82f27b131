"""Generated CIFAR archives served over HTTP on 127.0.0.1, for tests that run `make reproduce-cifar` as a user types
it: torchvision downloads, checks and unpacks the archive as it would the real one. A subprocess started with
`redirect_env(sources)` has torchvision's URL and MD5 sums pointed at the generated archive (through
tests/support/redirect_cifar/sitecustomize.py); nothing in the project's code knows about it."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import socket
import tarfile
import threading
from contextlib import contextmanager
from pathlib import Path

from . import REPO
from .fake_data import make_fake_cifar10, make_fake_cifar100

REDIRECT_DIR = REPO / "tests" / "support" / "redirect_cifar"
SOURCES_ENV = "RESNET_REPRO_TEST_CIFAR_SOURCES"
CLASS_OF = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_archive(dataset: str, dest: Path) -> tuple[Path, dict]:
    """A generated `dataset` as the official archive (e.g. dest/cifar-10-python.tar.gz) and the attributes of
    torchvision's class that describe it: {url (to be set by the server), tgz_md5, train_list, test_list, meta}."""
    import torchvision

    dataset_class = getattr(torchvision.datasets, CLASS_OF[dataset])
    unpacked = dest / f"{dataset}-unpacked"
    md5 = (make_fake_cifar10 if dataset == "cifar10" else make_fake_cifar100)(unpacked)
    archive = dest / dataset_class.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(unpacked / dataset_class.base_folder, arcname=dataset_class.base_folder)
    shutil.rmtree(unpacked)
    attributes = {
        "tgz_md5": _md5(archive),
        "train_list": [[name, md5[name]] for name, _ in dataset_class.train_list],
        "test_list": [[name, md5[name]] for name, _ in dataset_class.test_list],
        "meta": {**dataset_class.meta, "md5": md5[dataset_class.meta["filename"]]},
    }
    return archive, attributes


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the standard library's name)
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # quiet
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client that hangs up early (a probe): not the test's concern
        pass


@contextmanager
def serve(folder: Path):
    """An HTTP server for `folder` on 127.0.0.1 while the block runs: yields (base URL, the list of requested paths)."""
    server = _Server(("127.0.0.1", 0), functools.partial(_CountingHandler, directory=str(folder)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_server():
    """A port that accepts connections and never answers (a network that hangs): yields its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (no network): connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def redirect_env(path: Path, base_url: str, archives: dict[str, tuple[Path, dict]]) -> dict[str, str]:
    """Write the sources file at `path` (each data set's archive at `base_url`) and return the environment variables
    that make a subprocess's torchvision use it."""
    sources = {
        CLASS_OF[dataset]: {**attributes, "url": f"{base_url}/{archive.name}"}
        for dataset, (archive, attributes) in archives.items()
    }
    path.write_text(json.dumps(sources, indent=1))
    return {"PYTHONPATH": str(REDIRECT_DIR), SOURCES_ENV: str(path)}
