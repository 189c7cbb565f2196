"""Download and extraction, offline: file:// URLs and a refused local port, never the network."""

import hashlib
import zipfile

import pytest

from genrec_jax.data import DataError, download_movielens, fetch_and_extract, load_events
from genrec_jax.data import download as download_mod


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def release(tmp_path):
    src = tmp_path / "server"
    src.mkdir()
    return make_zip(src / "ml-100k.zip", {
        "ml-100k/u.data": "1\t1\t5\t100\n1\t2\t3\t200\n2\t1\t4\t50\n",
        "ml-100k/README": "hello",
    })


def test_fetch_extract_and_verify(tmp_path, release):
    path, digest = release
    dest = tmp_path / "cache"
    out = fetch_and_extract(path.as_uri(), dest, sha256=digest)
    assert out == dest / "ml-100k"
    assert (out / "u.data").read_text().startswith("1\t1\t5")
    assert (dest / "ml-100k.zip").is_file()
    assert not list(dest.glob("*.part")) and not list(dest.glob(".*.part"))
    # Already extracted and verified: no download (the source may be gone).
    path.unlink()
    assert fetch_and_extract(path.as_uri(), dest, sha256=digest) == out


def test_sha256_mismatch_deletes_the_file(tmp_path, release, caplog):
    path, digest = release
    dest = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(DataError) as info:
        fetch_and_extract(path.as_uri(), dest, sha256=wrong)
    assert wrong in str(info.value) and digest in str(info.value)
    assert list(dest.iterdir()) == []
    # Without a pin the computed hash is logged.
    with caplog.at_level("WARNING"):
        fetch_and_extract(path.as_uri(), dest)
    assert digest in caplog.text


def test_unsafe_members_are_refused(tmp_path):
    for i, bad in enumerate(["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"]):
        path, _ = make_zip(tmp_path / f"bad{i}.zip", {"ok.txt": "x", bad: "boom"})
        dest = tmp_path / f"dest{i}"
        with pytest.raises(DataError, match="refusing to extract"):
            fetch_and_extract(path.as_uri(), dest)
        assert not (tmp_path / "evil.txt").exists() and not (dest / "ok.txt").exists()


def test_offline_message_says_where_to_put_the_files(tmp_path):
    dest = tmp_path / "cache"
    for url in [(tmp_path / "nowhere" / "ml-1m.zip").as_uri(),
                "http://127.0.0.1:9/ml-1m.zip"]:  # a refused local port
        with pytest.raises(DataError) as info:
            fetch_and_extract(url, dest, manual_folder=dest / "ml-1m", timeout=5)
        message = str(info.value)
        assert "could not be downloaded" in message
        assert str(dest / "ml-1m") in message and str(dest / "ml-1m.zip") in message
        assert not list(dest.iterdir())


def test_download_movielens_and_load_events(tmp_path, release, monkeypatch):
    path, digest = release
    monkeypatch.setattr(download_mod, "MOVIELENS_URL", path.parent.as_uri() + "/{name}.zip")
    monkeypatch.setitem(download_mod.MOVIELENS_SHA256, "ml-100k", digest)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="download_movielens"):
        load_events("ml-100k", cache)
    ev = load_events("ml-100k", cache, download=True)
    assert len(ev) == 3
    assert download_movielens("ml-100k", cache) == cache / "ml-100k"
    with pytest.raises(ValueError, match="ml-100k"):
        download_movielens("ml-7m", cache)


def test_not_a_zip_is_a_data_error(tmp_path):
    fake = tmp_path / "server" / "ml-1m.zip"
    fake.parent.mkdir()
    fake.write_bytes(b"<html>not found</html>")
    dest = tmp_path / "cache"
    with pytest.raises(DataError, match="not a valid zip"):
        fetch_and_extract(fake.as_uri(), dest)
    assert not (dest / "ml-1m.zip").exists()
