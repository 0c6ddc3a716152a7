"""The full-MNIST download path against a local HTTP server on 127.0.0.1 serving fake files."""

import functools
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from hobench.data import MNIST_FILES, DataError, fetch, load_mnist, load_mnist_full, write_idx

N_TRAIN, N_TEST = 12, 5
# The mirror folder, its checksum table (file name -> SHA-256) and the arrays it holds.
Mirror = tuple[Path, dict[str, str], dict[str, np.ndarray]]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class ShortBodyHandler(BaseHTTPRequestHandler):
    """Promises 1000 bytes and sends 10: a connection that dies mid-download."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"x" * 10)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server:
    """A threaded HTTP server on 127.0.0.1 that can be stopped mid-test."""

    def __init__(self, handler: Callable[..., BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join(timeout=5)
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # An http_proxy in the environment must not divert requests meant for 127.0.0.1.
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def mirror(tmp_path: Path) -> Mirror:
    """A folder of small fake MNIST files."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    checksums = {}
    for name, array in arrays.items():
        checksums[name] = hashlib.sha256(write_idx(folder / name, array).read_bytes()).hexdigest()
    return folder, checksums, arrays


@pytest.fixture
def server(mirror: Mirror) -> Iterator[Server]:
    handler = functools.partial(QuietHandler, directory=str(mirror[0]))
    running = Server(handler)
    yield running
    running.stop()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens here any more: connection refused


def test_download_parse_then_cache(tmp_path: Path, mirror: Mirror, server: Server) -> None:
    _, checksums, arrays = mirror
    cache = tmp_path / "cache"
    X, y = load_mnist("full", data_dir=cache, base_url=server.url, checksums=checksums)
    assert X.shape == (N_TRAIN + N_TEST, 784) and X.dtype == np.float32
    assert X.min() >= 0 and X.max() <= 1 and y.dtype == np.int64
    expected_y = np.concatenate(
        [arrays["train-labels-idx1-ubyte.gz"], arrays["t10k-labels-idx1-ubyte.gz"]]
    )
    np.testing.assert_array_equal(y, expected_y)
    np.testing.assert_allclose(X[0], arrays["train-images-idx3-ubyte.gz"][0].ravel() / 255.0)
    assert leftovers(cache / "mnist") == sorted(MNIST_FILES)

    server.stop()  # the second load must not touch the network
    parts = load_mnist_full(data_dir=cache, base_url=server.url, checksums=checksums)
    assert parts["train"][0].shape == (N_TRAIN, 784) and parts["test"][1].shape == (N_TEST,)
    np.testing.assert_array_equal(np.concatenate([parts["train"][1], parts["test"][1]]), y)


def test_base_url_from_environment(
    tmp_path: Path, mirror: Mirror, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOBENCH_MNIST_URL", server.url)
    X, _ = load_mnist("full", data_dir=tmp_path / "cache", checksums=mirror[1])
    assert len(X) == N_TRAIN + N_TEST


def test_truncated_download_leaves_nothing(tmp_path: Path, mirror: Mirror, server: Server) -> None:
    folder, checksums, _ = mirror
    bad = "train-images-idx3-ubyte.gz"  # fetched first
    raw = (folder / bad).read_bytes()
    (folder / bad).write_bytes(raw[: len(raw) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch") as error:
        load_mnist("full", data_dir=cache, base_url=server.url, checksums=checksums)
    message = str(error.value)
    assert "\n" not in message and bad in message and checksums[bad] in message
    assert leftovers(cache / "mnist") == []  # neither the bad file nor a temp file


def test_connection_dropped_mid_body_leaves_nothing(tmp_path: Path) -> None:
    running = Server(ShortBodyHandler)
    try:
        dest = tmp_path / "cache" / "file.gz"
        with pytest.raises(DataError, match="download failed") as error:
            fetch(running.url + "file.gz", dest, "0" * 64, timeout=5)
    finally:
        running.stop()
    assert "\n" not in str(error.value)
    assert leftovers(dest.parent) == []


def test_tampered_cache_is_fetched_again(tmp_path: Path, mirror: Mirror, server: Server) -> None:
    folder, checksums, _ = mirror
    cache = tmp_path / "cache"
    load_mnist("full", data_dir=cache, base_url=server.url, checksums=checksums)
    victim = cache / "mnist" / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(b"tampered")
    _, y = load_mnist("full", data_dir=cache, base_url=server.url, checksums=checksums)
    assert victim.read_bytes() == (folder / victim.name).read_bytes()
    assert len(y) == N_TRAIN + N_TEST
    assert leftovers(cache / "mnist") == sorted(MNIST_FILES)


def test_server_down_says_where_to_put_the_files(tmp_path: Path, mirror: Mirror) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="download failed") as error:
        load_mnist("full", data_dir=cache, base_url=closed_port_url(), checksums=mirror[1])
    message = str(error.value)
    assert "\n" not in message
    assert str(cache / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert mirror[1]["train-images-idx3-ubyte.gz"] in message
    assert leftovers(cache / "mnist") == []


def test_tampered_cache_and_server_down_says_the_cached_file_is_bad(
    tmp_path: Path, mirror: Mirror
) -> None:
    victim = tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"tampered")
    with pytest.raises(DataError) as error:
        load_mnist(
            "full", data_dir=tmp_path / "cache", base_url=closed_port_url(), checksums=mirror[1]
        )
    message = str(error.value)
    bad = hashlib.sha256(b"tampered").hexdigest()
    assert f"the cached file fails its checksum (sha256 {bad}) and the download failed" in message
    assert f"delete {victim}, download it yourself and put it there" in message


def test_fetch_uses_a_valid_cache_without_network(tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    assert fetch(closed_port_url() + "file.bin", dest, digest) == dest


def test_checksum_table_must_cover_every_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no SHA-256"):
        load_mnist_full(data_dir=tmp_path, base_url=closed_port_url(), checksums={})
