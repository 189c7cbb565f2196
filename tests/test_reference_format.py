"""benchmarks/reference_format.py: a tiny event table written in the reference's ML-1M format."""

import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import reference_format  # noqa: E402
from genrec_jax.data.events import Events  # noqa: E402


def _events(ratings):
    # raw users 30, 7, 30, 12; raw items 500, 9, 77, 9 -> users 3, 1, 3, 2; items 3, 1, 2, 1.
    return Events(user=np.array([30, 7, 30, 12]), item=np.array([500, 9, 77, 9]),
                  rating=np.array(ratings, np.float32),
                  timestamp=np.array([50, 10, 40, 10], np.int64), source="tiny",
                  rating_scale=(1.0, 5.0))


def test_writes_hand_checked_files(tmp_path):
    info = reference_format.write_reference_format(_events([4, 1, 5, 3]), tmp_path)
    assert info == {"num_users": 3, "num_items": 3, "num_events": 4}
    # file order kept (not sorted by time), dense ids by sorted raw key, integer ratings.
    assert (tmp_path / "ratings.dat").read_text() == (
        "3::3::4::50\n1::1::1::10\n3::2::5::40\n2::1::3::10\n")
    assert (tmp_path / "movies.dat").read_bytes() == (
        b"1::item 1 (0000)::unknown\n2::item 2 (0000)::unknown\n3::item 3 (0000)::unknown\n")
    assert (tmp_path / "users.dat").read_text() == (
        "1::M::1::0::00000\n2::M::1::0::00000\n3::M::1::0::00000\n")


def test_item_ids_match_our_sequences(tmp_path):
    from genrec_jax.data.sequences import build_sequences

    events = _events([4, 1, 5, 3])
    reference_format.write_reference_format(events, tmp_path)
    ds = build_sequences(events)
    # user 3 (raw 30): items by time 77 (t=40) then 500 (t=50) -> dense 2, 3 in both.
    lines = [l.split("::") for l in (tmp_path / "ratings.dat").read_text().splitlines()]
    ref_user3 = [int(i) for u, i, r, t in sorted((l for l in lines if l[0] == "3"),
                                                 key=lambda l: int(l[3]))]
    ours_user3 = ds.items[ds.offsets[2]:ds.offsets[3]].tolist()
    assert ref_user3 == ours_user3 == [2, 3]


def test_fractional_rating_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"tiny: event 2 \(user 30, item 77\) has rating 4.5; "
                                         r"the reference reads integer ratings only "
                                         r"\(1 fractional ratings in all\)"):
        reference_format.write_reference_format(_events([4, 1, 4.5, 3]), tmp_path)
    assert not (tmp_path / "ratings.dat").exists()


def test_refuses_output_inside_the_repository(capsys):
    with pytest.raises(SystemExit):
        reference_format.main(["--dataset=csv", "--data_dir=x.csv", f"--out={REPO}/data_out"])
    assert "is inside the repository" in capsys.readouterr().err
