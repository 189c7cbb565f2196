"""The TFDS bridge: ``tfds:movielens/...`` data sets as Events, prepared offline.

TFDS's own MovieLens builder prepares tiny fake releases written here (its download step is
pointed at a local folder), so the bridge reads real TFDS record files through TensorFlow and
must give the same events as our reader of the same publisher file. Skipped when the optional
``tfds`` extra is not installed; the error message without it is tested always.
"""

import builtins
import pathlib
import sys

import numpy as np
import pytest

from genrec_jax.data import DataError, load_events, read_ml_100k, read_ml_csv
from genrec_jax.data import tfds_bridge

U_DATA = [(1, 10, 5, 881250949), (1, 20, 3, 881250950), (2, 10, 4, 891717742),
          (2, 30, 1, 878887116), (3, 20, 2, 880606923), (3, 30, 5, 886397596),
          (3, 10, 4, 884182806)]
LATEST = [(1, 10, 4.0, 964982703), (1, 20, 3.5, 964981247), (2, 10, 0.5, 964982224),
          (2, 30, 5.0, 964983815)]
GENRES_100K = "|".join(["0"] * 19)


def _write_100k(root: pathlib.Path) -> pathlib.Path:
    folder = root / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in U_DATA))
    (folder / "u.item").write_text("".join(
        f"{i}|Movie {i} (1995)|01-Jan-1995||http://x/{i}|{GENRES_100K}\n" for i in (10, 20, 30)))
    (folder / "u.user").write_text("".join(
        f"{u}|{20 + u}|M|technician|8571{u}\n" for u in (1, 2, 3)))
    return folder


def _write_latest_small(root: pathlib.Path) -> pathlib.Path:
    folder = root / "ml-latest-small"
    folder.mkdir(parents=True)
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{r},{t}\n" for u, i, r, t in LATEST))
    (folder / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f"{i},Movie {i} (1995),Comedy|Drama\n" for i in (10, 20, 30)))
    return folder


def _rows(events):
    return sorted(zip(events.user.tolist(), events.item.tolist(), events.rating.tolist(),
                      events.timestamp.tolist()))


def test_without_tfds_the_error_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_tfds(name, *args, **kwargs):
        if name.split(".")[0] in ("tensorflow_datasets", "tensorflow"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tfds)
    for module in [m for m in sys.modules if m.split(".")[0] in ("tensorflow_datasets",
                                                                 "tensorflow")]:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(ImportError, match=r"pip install -e \.\[tfds\]"):
        tfds_bridge.load_tfds_events("tfds:movielens/100k-ratings")
    with pytest.raises(ImportError, match=r"pip install -e \.\[tfds\]"):
        load_events("tfds:movielens/1m-ratings")


def test_unknown_tfds_names_are_rejected_before_importing_tfds():
    with pytest.raises(ValueError, match="supported: tfds:movielens/100k-ratings"):
        tfds_bridge.load_tfds_events("tfds:mnist")
    with pytest.raises(ValueError, match="unknown TFDS data set"):
        load_events("tfds:movielens/100k-movies")


@pytest.fixture(scope="module")
def tfds():
    tfds = pytest.importorskip("tensorflow_datasets",
                               reason="optional extra: pip install -e .[tfds]")
    pytest.importorskip("tensorflow", reason="optional extra: pip install -e .[tfds]")
    return tfds


@pytest.fixture
def offline_download(tfds, monkeypatch, tmp_path):
    """Points TFDS's download step at a local folder of fake releases."""
    extracted = tmp_path / "extracted"

    def download_and_extract(self, url_or_urls):
        return str(extracted)

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                        download_and_extract)
    return extracted


def test_movielens_100k_through_tfds_equals_our_reader(offline_download, tmp_path):
    folder = _write_100k(offline_download)
    data_dir = tmp_path / "tensorflow_datasets"
    name = "tfds:movielens/100k-ratings"
    # Nothing is downloaded unasked.
    with pytest.raises(DataError, match="not prepared.*download=True"):
        tfds_bridge.load_tfds_events(name, data_dir)
    events = tfds_bridge.load_tfds_events(name, data_dir, download=True)
    want = read_ml_100k(folder / "u.data")
    assert _rows(events) == _rows(want)
    assert events.user.dtype == np.int64 and events.item.dtype == np.int64
    assert events.rating.dtype == np.float32 and events.timestamp.dtype == np.int64
    assert events.rating_scale == (1.0, 5.0)
    assert events.source.startswith(name)
    # Prepared now: read again through the registry, offline; a sub-split works too.
    again = load_events(name, data_dir)
    assert _rows(again) == _rows(want)
    part = load_events(name, data_dir, split="train[:3]")
    assert len(part) == 3 and set(_rows(part)) <= set(_rows(want))


def test_latest_small_half_stars(offline_download, tmp_path):
    folder = _write_latest_small(offline_download)
    events = tfds_bridge.load_tfds_events("movielens/latest-small-ratings",
                                          tmp_path / "tfds", download=True)
    assert _rows(events) == _rows(read_ml_csv(folder / "ratings.csv"))
    assert events.rating_scale == (0.5, 5.0)
    assert sorted(events.rating.tolist()) == [0.5, 3.5, 4.0, 5.0]


def test_tfds_ratings_outside_the_scale_are_data_errors(offline_download, tmp_path):
    folder = _write_100k(offline_download)
    # TFDS does not check ratings: a 7 goes into its records, the bridge refuses it.
    (folder / "u.data").write_text("1\t10\t7\t881250949\n")
    with pytest.raises(DataError, match=r"user_rating.*outside the rating scale \[1, 5\]"):
        tfds_bridge.load_tfds_events("movielens/100k-ratings", tmp_path / "tfds",
                                     download=True)
