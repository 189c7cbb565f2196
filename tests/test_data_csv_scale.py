"""dataset=csv with a declared rating scale: half stars, a 1-10 scale, and bad ratings."""

import numpy as np
import pytest

from experiments.configs import pretrain as pretrain_configs
from genrec_jax.data import DataError, load_events, parse_rating_scale, read_csv
from genrec_jax.data.prepare import csv_options, load_configured_events


def put(tmp_path, text, name="ratings.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def csv_config(path, scale=None):
    arg = f"dataset=csv,data_dir={path}" + (f",data.rating_scale={scale}" if scale else "")
    return pretrain_configs.get_config(arg)


@pytest.mark.parametrize("spec,expected", [
    ("1:5", (1.0, 5.0, None)), ("0.5:5:0.5", (0.5, 5.0, 0.5)), ("1:10:1", (1.0, 10.0, 1.0)),
    ((0, 1, 0.1), (0.0, 1.0, 0.1)), ([1, 7], (1.0, 7.0, None)),
])
def test_parse_rating_scale(spec, expected):
    assert parse_rating_scale(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("5", "data.rating_scale: expected 'lo:hi' or 'lo:hi:step' (e.g. 1:5, 0.5:5:0.5, 1:10:1), "
          "got '5'"),
    ("1:five", "data.rating_scale: expected numbers in 'lo:hi' or 'lo:hi:step', got '1:five'"),
    ("5:1", "data.rating_scale='5:1': rating scale must have finite lo <= hi, got (5, 1)"),
    ("1:5:0", "data.rating_scale='1:5:0': rating step must be a finite number > 0, got 0"),
    ("1:5:0.3", "data.rating_scale='1:5:0.3': rating step 0.3 does not divide the scale [1, 5] "
                "into whole steps"),
])
def test_bad_scale_specs_name_the_config_key(spec, message):
    with pytest.raises(ValueError) as err:
        parse_rating_scale(spec, name="data.rating_scale")
    assert str(err.value) == message


def test_half_stars_through_the_config(tmp_path):
    path = put(tmp_path, "user,item,rating,timestamp\n1,10,0.5,100\n1,11,4.5,200\n2,10,5,300\n")
    cfg = csv_config(path, "0.5:5:0.5")
    assert tuple(cfg.data.rating_scale) == (0.5, 5.0, 0.5)
    assert csv_options(cfg) == {"rating_scale": (0.5, 5.0), "rating_step": 0.5}
    events, sim = load_configured_events(cfg)
    assert sim is None
    np.testing.assert_array_equal(events.rating, np.float32([0.5, 4.5, 5.0]))
    assert events.rating_scale == (0.5, 5.0)


def test_a_one_to_ten_scale_through_the_config(tmp_path):
    path = put(tmp_path, "1,10,1,100\n1,11,10,200\n2,10,7,300\n")
    events, _ = load_configured_events(csv_config(tmp_path, "1:10:1"))   # the folder works too
    np.testing.assert_array_equal(events.rating, np.float32([1, 10, 7]))
    assert events.rating_scale == (1.0, 10.0) and events.source == str(path)


def test_the_default_scale_is_one_to_five_with_any_value(tmp_path):
    path = put(tmp_path, "1,10,1,100\n1,11,3.7,200\n")
    cfg = csv_config(path)
    assert csv_options(cfg) == {"rating_scale": (1.0, 5.0), "rating_step": None}
    np.testing.assert_array_equal(load_configured_events(cfg)[0].rating, np.float32([1, 3.7]))
    assert csv_options(pretrain_configs.get_config("dataset=simulator")) == {}


@pytest.mark.parametrize("scale,rating,problem", [
    ("0.5:5:0.5", "4.75", "'4.75' is not a multiple of 0.5; this file has ratings in steps of "
                          "0.5 on [0.5, 5]"),
    ("0.5:5:0.5", "0", "'0' is outside the rating scale [0.5, 5]"),
    ("1:10:1", "11", "'11' is outside the rating scale [1, 10]"),
    ("1:10:1", "7.5", "'7.5' is not an integer; this file has whole-star ratings [1, 10]"),
    ("1:10:1", "nan", "'nan' is not a finite number"),
    ("0.25:1.25:0.5", "0.5", "'0.5' is not 0.25 plus a multiple of 0.5; this file has ratings in "
                             "steps of 0.5 on [0.25, 1.25]"),
])
def test_a_bad_rating_names_file_line_and_field(tmp_path, scale, rating, problem):
    lo = scale.split(":")[0]                                  # a valid rating on line 2
    path = put(tmp_path, f"u,i,stars,t\n1,10,{lo},100\n\n2,11,{rating},200\n")
    with pytest.raises(DataError) as err:
        load_configured_events(csv_config(path, scale))
    hint = ("another scale: read_csv(rating_scale=(lo, hi), rating_step=s), or "
            "data.rating_scale=lo:hi:step in the experiment config")
    assert str(err.value) == f"{path} line 4, field 'stars': {problem} ({hint})"
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 4, "stars")


def test_a_decimal_step_accepts_its_grid_despite_float_rounding(tmp_path):
    path = put(tmp_path, "1,10,0.3,100\n1,11,0.7,200\n2,10,1,300\n2,11,0,400\n")
    events = read_csv(path, rating_scale=(0, 1), rating_step=0.1)
    np.testing.assert_array_equal(events.rating, np.float32([0.3, 0.7, 1, 0]))
    with pytest.raises(DataError, match=r"line 1, field 'rating': '0.35' is not a multiple of 0.1"):
        read_csv(put(tmp_path, "1,10,0.35,100\n", "b.csv"), rating_scale=(0, 1), rating_step=0.1)
    with pytest.raises(ValueError, match=r"rating_scale must be \(lo, hi\), got \(0, 1, 0.1\)"):
        load_events("csv", path, rating_scale=(0, 1, 0.1))
