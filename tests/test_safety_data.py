"""Downloads and data loaders: a cut-short transfer or an unusable cache folder gives a clear answer, no debris."""

from __future__ import annotations

import http.server
import threading

import pytest

from convbias import data
from convbias.data import DownloadError, download, real


class _CutShort(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # announces 10,000 bytes, sends 100, hangs up
        self.send_response(200)
        self.send_header("Content-Length", "10000")
        self.end_headers()
        self.wfile.write(b"x" * 100)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture()
def cut_short_url():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CutShort)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/f.bin"
    httpd.shutdown()
    httpd.server_close()


def test_cut_short_transfer_is_one_clear_error(cut_short_url, tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="cut short") as info:
        download(cut_short_url, dest, "0" * 32, timeout=5)
    assert "\n" not in str(info.value)
    assert not dest.exists() and not list(tmp_path.iterdir())  # no .part left behind


def test_unusable_cache_folder_falls_back(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(
        "CONVBIAS_CACHE", str(blocker / "cache")
    )  # misconfigured: under a file
    assert data.cache_dir() == tmp_path / "home" / ".cache" / "convbias"
    assert "cannot be written" in capsys.readouterr().out


def test_load_mnist_auto_falls_back_when_no_folder_is_writable(
    tmp_path, monkeypatch, capsys
):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("HOME", str(blocker))  # the default folder is unusable too
    monkeypatch.setenv("CONVBIAS_CACHE", str(blocker / "cache"))
    split = data.load_mnist("auto")
    assert split.source == "mnist-5k" and len(split.X_train) == 4000
    assert "offline digits" in capsys.readouterr().out
    with pytest.raises(DownloadError, match="writable"):
        data.load_mnist("full")


@pytest.mark.parametrize("fraction", [-0.2, 0.0, 1.0, 1.5])
def test_test_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        real.load_digits(test_fraction=fraction)
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_mnist("offline", test_fraction=fraction)
