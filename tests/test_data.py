import hashlib
import http.server
import socket
import threading
from functools import partial

import pytest
import torch

from convbias import data
from convbias.data import ChecksumError, DownloadError, download


@pytest.fixture()
def server(tmp_path):
    """An HTTP server on loopback serving files from a temporary folder."""
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def test_download_good_file(server, tmp_path):
    root, url = server
    payload = b"convbias" * 1000
    (root / "a.bin").write_bytes(payload)
    dest = tmp_path / "cache" / "a.bin"
    assert download(f"{url}/a.bin", dest, md5(payload)) == dest
    assert dest.read_bytes() == payload
    assert not dest.with_name("a.bin.part").exists()
    (root / "a.bin").unlink()  # a cached, verified file is not fetched again
    assert download(f"{url}/a.bin", dest, md5(payload)).read_bytes() == payload


def test_download_bad_checksum_leaves_nothing(server, tmp_path):
    root, url = server
    (root / "b.bin").write_bytes(b"tampered")
    dest = tmp_path / "cache" / "b.bin"
    with pytest.raises(ChecksumError, match="b.bin.*expected 0+"):
        download(f"{url}/b.bin", dest, "0" * 32)
    assert list(dest.parent.iterdir()) == []


def test_download_replaces_corrupted_cache_entry(server, tmp_path):
    root, url = server
    (root / "c.bin").write_bytes(b"right")
    dest = tmp_path / "c.bin"
    dest.write_bytes(b"wrong")
    download(f"{url}/c.bin", dest, md5(b"right"))
    assert dest.read_bytes() == b"right"


def test_download_missing_file_is_clear_error(server, tmp_path):
    _, url = server
    dest = tmp_path / "d.bin"
    with pytest.raises(DownloadError, match="could not download d.bin"):
        download(f"{url}/d.bin", dest, "0" * 32)
    assert not dest.exists() and not dest.with_name("d.bin.part").exists()


def test_download_unreachable_host_is_clear_error(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "e.bin"
    with pytest.raises(DownloadError, match="Check the network connection"):
        download(f"http://127.0.0.1:{port}/e.bin", dest, "0" * 32, timeout=2)
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVBIAS_CACHE", str(tmp_path / "c"))
    assert data.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_offline_mnist_split():
    split = data.load_mnist(source="offline", test_fraction=0.2, seed=0)
    assert split.X_train.shape == (4000, 1, 28, 28) and split.X_test.shape == (
        1000,
        1,
        28,
        28,
    )
    assert (
        split.X_train.dtype == torch.float32
        and 0 <= split.X_train.min()
        and split.X_train.max() <= 1
    )
    assert set(split.y_train.unique().tolist()) == set(range(10))
    assert split.source == "mnist-5k"
    again = data.load_mnist(source="offline", seed=0)
    assert torch.equal(split.y_test, again.y_test)


def test_auto_mnist_falls_back_offline_and_says_so(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("CONVBIAS_CACHE", str(tmp_path))
    monkeypatch.setattr(
        data.real, "MNIST_URL", "http://127.0.0.1:9/"
    )  # discard port: refused
    split = data.load_mnist(source="auto")
    assert split.source == "mnist-5k"
    assert "using the 5,000 offline digits" in capsys.readouterr().out
    with pytest.raises(DownloadError):
        data.load_mnist(source="full")


def test_cifar10_unavailable_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVBIAS_CACHE", str(tmp_path))
    monkeypatch.setattr(data.real, "CIFAR10_URL", "http://127.0.0.1:9/cifar.tar.gz")
    with pytest.raises(data.DataUnavailable):
        data.load_cifar10(quiet=True)


def test_bad_source_is_rejected():
    with pytest.raises(ValueError, match="source"):
        data.load_mnist(source="internet")


def test_digits():
    split = data.load_digits()
    assert (
        split.X_train.shape[1:] == (1, 8, 8)
        and len(split.X_train) + len(split.X_test) == 1797
    )
    assert split.X_train.max() == pytest.approx(1.0)


def test_images_gray_color_and_resize():
    cam = data.load_image("camera", size=64)
    assert cam.shape == (1, 64, 64) and cam.dtype == torch.float32
    ast = data.load_image("astronaut", size=(32, 48))
    assert ast.shape == (3, 32, 48)
    assert data.load_image("astronaut", size=16, gray=True).shape == (1, 16, 16)
    assert 0 <= ast.min() and ast.max() <= 1
    with pytest.raises(ValueError, match="unknown image"):
        data.load_image("lena")


def test_package_imports_fast_and_reexports():
    import subprocess
    import sys

    code = "import time; t = time.perf_counter(); import convbias; print(time.perf_counter() - t)"
    seconds = float(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    assert seconds < 0.5, (
        f"import convbias took {seconds:.2f} s: it must not import torch eagerly"
    )
    import convbias.models as models

    for name in data.__all__:
        assert hasattr(data, name), name
    for name in models.__all__:
        assert hasattr(models, name), name
