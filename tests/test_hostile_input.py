"""Hostile input for every reader: each returns valid ``Events`` (or titles) or raises
``DataError`` naming the file (and the line, where there is one) — never another exception.

Inputs are random bytes, truncated files, wrong encodings (Latin-1, UTF-16, cp1252), huge ids and
timestamps, negative values, NaN/inf ratings, wrong separators and field counts, broken JSON,
corrupt gzip streams and empty files.
"""

import codecs
import gzip
import json
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from genrec_jax.data import (
    DataError,
    Events,
    read_amazon_2018,
    read_csv,
    read_item_titles_100k,
    read_item_titles_csv,
    read_item_titles_dat,
    read_ml_100k,
    read_ml_10m,
    read_ml_1m,
    read_ml_csv,
)

SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
I64_MAX = np.iinfo(np.int64).max

# --------------------------------------------------------------------------------------
# Field values: plausible, borderline and hostile.

HUGE = ["9223372036854775807", "9223372036854775808", "18446744073709551616",
        "1" + "0" * 30, "9" * 5000, "-9223372036854775809"]
NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e309", "1e-320", "0", "-0",
           "-1", "-86400", "0.5", "4.5", "5", "5.0", "3", "1", "1_000", " 3 ", "+4", "0x10",
           "", " ", "\u0663", "\uff13", "3\x00", "é", "abc", "1e3", "1.0e0", "０"]
field = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(HUGE + NUMBERS),
    st.text(max_size=6),
)
ENCODINGS = ["utf-8", "latin-1", "cp1252", "utf-16", "utf-8-sig"]


@st.composite
def table_bytes(draw, sep: str, header: str | None = None, fields: int = 4):
    """A delimited file: valid rows with up to two fields replaced by hostile values, some rows
    with a wrong field count or separator, in some encoding, possibly truncated anywhere."""
    rows = []
    if header is not None and draw(st.integers(0, 3)):
        rows.append(header)
    for _ in range(draw(st.integers(0, 5))):
        row = ["7", "42", "4", "978300760"][:fields] + ["x"] * max(0, fields - 4)
        for k, value in draw(st.lists(st.tuples(st.integers(0, fields - 1), field),
                                      max_size=2)):
            row[k] = value
        n = draw(st.sampled_from([fields] * 8 + [fields - 1, fields + 1]))
        row = (row + ["1"])[:n]
        this_sep = draw(st.sampled_from([sep] * 12 + ["\t", ",", "::", ";", "|"]))
        rows.append(this_sep.join(row))
    eol = draw(st.sampled_from(["\n"] * 4 + ["\r\n", "\r", "\n\n"]))
    text = eol.join(rows) + draw(st.sampled_from(["", eol]))
    data = text.encode(draw(st.sampled_from(["utf-8"] * 4 + ENCODINGS)), errors="replace")
    if data and not draw(st.integers(0, 3)):
        data = data[: draw(st.integers(0, len(data) - 1))]
    return data


def edge_files(sep: str, header: str | None = None, fields: int = 4) -> list[bytes]:
    """Always-tried examples: a valid row, then one with a single field made hostile."""
    base = ["7", "42", "4", "978300760"][:fields] + ["x"] * max(0, fields - 4)
    files = []
    for k in range(fields):
        for value in HUGE + ["nan", "-inf", "-1", ""]:
            row = list(base)
            row[k] = value
            lines = ([header] if header else []) + [sep.join(base), sep.join(row)]
            files.append(("\n".join(lines) + "\n").encode())
    return files


def with_examples(files):
    """Decorator: ``hypothesis.example`` for each of ``files``."""
    def wrap(fn):
        for data in files:
            fn = example(data)(fn)
        return fn
    return wrap


random_bytes = st.binary(max_size=200)
empty_files = st.sampled_from([b"", b"\n", b"\r\n", b"   \n\t\n", codecs.BOM_UTF8,
                               codecs.BOM_UTF16_LE, b"\x00" * 8])


def _file(tmp_path_factory, name):
    return tmp_path_factory.mktemp("hostile") / name


def _check_events(events, path, scale=None, numeric_keys=True):
    assert isinstance(events, Events)
    n = len(events)
    assert n > 0
    for arr in (events.user, events.item, events.rating, events.timestamp):
        assert arr.shape == (n,)
    assert events.rating.dtype == np.float32 and events.timestamp.dtype == np.int64
    assert np.all(np.isfinite(events.rating))
    lo, hi = scale or events.rating_scale
    assert np.all((events.rating >= lo) & (events.rating <= hi))
    assert np.all(events.timestamp >= 0)
    if numeric_keys:
        assert events.user.dtype == np.int64 and events.item.dtype == np.int64
        assert np.all(events.user >= 0) and np.all(events.item >= 0)
    else:
        for key in list(events.user) + list(events.item):
            assert isinstance(key, (str, int, np.integer))
    assert events.source == str(path)


def _check_error(err: DataError, path, data: bytes):
    message = str(err)
    assert str(path) in message, message
    assert err.path == str(path)
    if err.line is not None:
        assert f"line {err.line}" in message, message
    if err.line is not None and not data.startswith(b"\x1f\x8b"):
        # Lines are counted on the raw bytes: never past the end of the file (+1 for "empty").
        assert 1 <= err.line <= data.count(b"\n") + data.count(b"\r") + 2, (err.line, message)


def _read(reader, path, data: bytes, **kw):
    """Calls the reader: returns its result, or None after checking a DataError."""
    path.write_bytes(data)
    try:
        return reader(path, **kw)
    except DataError as err:
        _check_error(err, path, data)
        return None
    # Any other exception type propagates and fails the test.


NUMERIC_READERS = [
    (read_ml_100k, "u.data", "\t", None, (1, 5)),
    (read_ml_1m, "ratings.dat", "::", None, (1, 5)),
    (read_ml_10m, "ratings.dat", "::", None, (0.5, 5)),
    (read_ml_csv, "ratings.csv", ",", "userId,movieId,rating,timestamp", (0.5, 5)),
]


@pytest.mark.parametrize("reader,name,sep,header,scale", NUMERIC_READERS,
                         ids=[r[0].__name__ for r in NUMERIC_READERS])
def test_movielens_readers(tmp_path_factory, reader, name, sep, header, scale):
    path = _file(tmp_path_factory, name)

    @SETTINGS
    @given(st.one_of(table_bytes(sep, header), table_bytes(sep, header), random_bytes,
                     empty_files))
    @with_examples(edge_files(sep, header))
    def check(data):
        events = _read(reader, path, data)
        if events is not None:
            _check_events(events, path, scale)

    check()


@pytest.mark.parametrize("reader,name,sep,header", [
    (read_ml_100k, "u.data", "\t", None),
    (read_ml_csv, "ratings.csv", ",", "userId,movieId,rating,timestamp"),
])
@pytest.mark.parametrize("value,where", [
    ("9223372036854775808", 0), ("1" + "0" * 30, 1), ("9" * 5000, 0),
    ("18446744073709551616", 3), ("-1", 3), ("nan", 2), ("inf", 2), ("-inf", 2), ("1e309", 2),
])
def test_numeric_edge_values_are_data_errors(tmp_path, reader, name, sep, header, value, where):
    fields = ["1", "2", "3", "100"]
    fields[where] = value
    lines = ([header] if header else []) + [sep.join(["1", "2", "3", "100"]), sep.join(fields)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        reader(path)
    assert info.value.line == len(lines)
    assert str(path) in str(info.value)


def test_largest_int64_ids_and_timestamps_are_read(tmp_path):
    big = str(I64_MAX)
    path = tmp_path / "u.data"
    path.write_text(f"{big}\t{big}\t5\t{big}\n")
    events = read_ml_100k(path)
    assert events.user[0] == events.item[0] == events.timestamp[0] == I64_MAX


# --------------------------------------------------------------------------------------
# Plain CSV


@pytest.mark.parametrize("kw", [{}, {"rating_scale": (0.5, 5), "rating_step": 0.5},
                                {"header": True}, {"header": False, "delimiter": ";"}],
                         ids=["default", "half-stars", "header", "semicolons"])
def test_read_csv(tmp_path_factory, kw):
    path = _file(tmp_path_factory, "ratings.csv")
    sep = kw.get("delimiter", ",")
    quoted = st.sampled_from(['"1","2","3","4"', '"unterminated,1,2,3', 'a"b,1,3,4',
                              '"x\ny",2,3,4', "\x00,1,3,4"]).map(lambda s: s.replace(",", sep))
    rows = st.lists(st.one_of(quoted, st.lists(field, min_size=1, max_size=5).map(sep.join)),
                    max_size=6).map(lambda rs: "\n".join(rs).encode("utf-8", "replace"))

    @SETTINGS
    @given(st.one_of(table_bytes(sep, "user,item,rating,timestamp"), rows, random_bytes,
                     empty_files))
    @with_examples(edge_files(sep))
    def check(data):
        events = _read(read_csv, path, data, **kw)
        if events is not None:
            scale = kw.get("rating_scale", (1, 5))
            _check_events(events, path, scale, numeric_keys=False)
            for keys in (events.user, events.item):
                if keys.dtype != object:
                    assert keys.dtype == np.int64 and np.all(keys >= 0)

    check()


def test_read_csv_keeps_ids_beyond_int64_as_strings(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(f"1,7,3,4\n{'9' * 25},{'9' * 5000},3,4\n")
    events = read_csv(path)
    assert events.user.dtype == object and events.user[1] == "9" * 25
    assert events.item.dtype == object and events.item[1] == "9" * 5000


# --------------------------------------------------------------------------------------
# Amazon 2018 JSON lines

json_value = st.one_of(
    st.sampled_from([None, True, False, "", "A1", 3, 5, 5.0, 0, -1, 6, 4.5, float("nan"),
                     float("inf"), -float("inf"), 10**400, -(10**30), 2**63, "1400000000",
                     "-5", "1e309", "nan", [], {}, [1]]),
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
)
KEYS = ["reviewerID", "asin", "overall", "unixReviewTime"]


@st.composite
def amazon_line(draw):
    obj = {"reviewerID": "U1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1400000000}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True)):
        if draw(st.booleans()):
            obj[key] = draw(json_value)
        else:
            del obj[key]
    try:
        text = json.dumps(obj)  # NaN/Infinity as JSON extensions, as Python writes them
    except ValueError:  # integers too long for str(); write the line by hand
        text = "{" + ", ".join(f'"{k}": {v}' for k, v in obj.items()) + "}"
    return text


hostile_json = st.sampled_from([
    "[" * 100_000 + "]" * 100_000,  # nesting deeper than the recursion limit
    '{"overall": ' + "9" * 5000 + ', "reviewerID": "u", "asin": "i", "unixReviewTime": 1}',
    '{"overall": 5, "reviewerID": "u", "asin": "i", "unixReviewTime": ' + "9" * 5000 + "}",
    '{"overall": 5, "reviewerID": "u", "asin": "i", "unixReviewTime": 99999999999999999999}',
    '{"overall": 5, "reviewerID": "u", "asin": "i", "unixReviewTime": 1.5}',
    '{"overall": 5, "reviewerID": "u", "asin": "i", "unixReviewTime": 1e3}',
    '{"overall": 5, "reviewerID": "u", "asin": "i", "unixReviewTime": "\u0661"}',
    '{"overall": 1e999, "reviewerID": "u", "asin": "i", "unixReviewTime": 1}',
    '{"overall": -Infinity, "reviewerID": "u", "asin": "i", "unixReviewTime": 1}',
    '{"reviewerID": "u", "reviewerID": 3, "asin": "i", "overall": 5, "unixReviewTime": 1}',
    '"just a string"', "null", "5", "{", "}", '{"a": "\\ud800"}',
])


@st.composite
def amazon_bytes(draw):
    lines = draw(st.lists(st.one_of(amazon_line(), hostile_json), max_size=4))
    data = "\n".join(lines).encode(draw(st.sampled_from(["utf-8"] * 4 + ENCODINGS)),
                                   errors="replace")
    if draw(st.booleans()):
        data = gzip.compress(data, mtime=0)
    if data and not draw(st.integers(0, 3)):
        data = data[: draw(st.integers(0, len(data) - 1))]
    return data


AMAZON_EDGE_LINES = [
    "[" * 100_000 + "]" * 100_000,
    '{"overall": 10' + "0" * 400 + ', "reviewerID": "u", "asin": "i", "unixReviewTime": 1}',
    '{"overall": ' + "9" * 5000 + ', "reviewerID": "u", "asin": "i", "unixReviewTime": 1}',
    '{"overall": 5, "reviewerID": "u", "asin": "i", "unixReviewTime": 99999999999999999999}',
    '{"overall": NaN, "reviewerID": "u", "asin": "i", "unixReviewTime": 1}',
]


def test_read_amazon_2018(tmp_path_factory):
    path = _file(tmp_path_factory, "All_Beauty_5.json.gz")

    @SETTINGS
    @given(st.one_of(amazon_bytes(), amazon_bytes(), amazon_bytes(), random_bytes, empty_files,
                     random_bytes.map(lambda b: b"\x1f\x8b" + b)))
    @with_examples([line.encode() for line in AMAZON_EDGE_LINES])
    def check(data):
        events = _read(read_amazon_2018, path, data)
        if events is not None:
            _check_events(events, path, (1, 5), numeric_keys=False)

    check()


@pytest.mark.parametrize("line", AMAZON_EDGE_LINES)
def test_amazon_edge_lines_are_data_errors(tmp_path, line):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"reviewerID": "u", "asin": "i", "overall": 5.0,
                                "unixReviewTime": 1}) + "\n" + line + "\n")
    assert sys.getrecursionlimit() < 100_000
    with pytest.raises(DataError) as info:
        read_amazon_2018(path)
    assert info.value.line == 2 and str(path) in str(info.value)


# --------------------------------------------------------------------------------------
# Titles


TITLE_READERS = [
    (read_item_titles_100k, "u.item", "|", None, 5),
    (read_item_titles_dat, "movies.dat", "::", None, 3),
    (read_item_titles_csv, "movies.csv", ",", "movieId,title,genres", 3),
]


@pytest.mark.parametrize("reader,name,sep,header,fields", TITLE_READERS,
                         ids=[r[0].__name__ for r in TITLE_READERS])
def test_title_readers(tmp_path_factory, reader, name, sep, header, fields):
    path = _file(tmp_path_factory, name)

    @SETTINGS
    @given(st.one_of(table_bytes(sep, header, fields), random_bytes, empty_files))
    @with_examples(edge_files(sep, header, fields)[::3])
    def check(data):
        titles = _read(reader, path, data)
        if titles is not None:
            assert isinstance(titles, dict)
            for key, title in titles.items():
                assert isinstance(key, int) and 0 <= key <= I64_MAX
                assert isinstance(title, str)

    check()


def test_dat_titles_in_utf8_mode_report_bad_bytes(tmp_path):
    path = tmp_path / "movies.dat"
    path.write_bytes("1::Am\u00e9lie (2001)::Comedy\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 1, field 'Title'.*not valid utf-8"):
        read_item_titles_dat(path, encoding="utf-8")
    assert read_item_titles_dat(path) == {1: "Am\u00e9lie (2001)"}


# --------------------------------------------------------------------------------------
# A non-finite loss, end to end


@pytest.mark.slow
def test_non_finite_loss_stops_pretraining_naming_the_step(tmp_path):
    """An infinite learning rate makes step 2's loss NaN: the run stops naming step 2, the
    checkpoint of step 1 stays the latest, nothing of the bad state is written."""
    from experiments.configs import pretrain as pretrain_config
    from genrec_jax.train import loop
    from genrec_jax.train.checkpoint import Checkpointer
    from genrec_jax.train.pretrain import pretrain
    from tests.scripts.procs import read_metrics

    cfg = pretrain_config.get_config(
        "smoke=True,num_steps=4,checkpoint_every=1,log_every=1,optimizer.learning_rate=inf")
    with pytest.raises(loop.NonFiniteLossError, match=r"at step 2;.*checkpoint \(step 1\)"):
        pretrain(cfg, str(tmp_path), verbose=False)
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == [1]
    assert [r["step"] for r in read_metrics(tmp_path)] == [1]
    assert not (tmp_path / "metrics.json").exists()


# --------------------------------------------------------------------------------------
# Hostile config values: accepted and valid, or a ConfigError naming the key


CONFIG_KEYS = ["batch_size", "epochs", "log_every", "checkpoint_every", "seed", "num_steps",
               "optimizer.learning_rate", "smoke", "eval.batch_size"]


@SETTINGS
@given(key=st.sampled_from(CONFIG_KEYS),
       value=st.one_of(st.sampled_from(HUGE + NUMBERS + ["maybe", "True", "false", "1.5"]),
                       st.text(alphabet=st.characters(blacklist_characters=",:="), max_size=6)))
def test_config_values_are_valid_or_refused_naming_the_key(key, value):
    from experiments.configs import common
    from experiments.configs import pretrain as pretrain_config

    arg = f"{key}={value}" if key == "smoke" else f"smoke=True,{key}={value}"
    try:
        cfg = pretrain_config.get_config(arg)
    except common.ConfigError as err:
        assert str(err).startswith(f"config key {key}"), (arg, str(err))
        return
    # Accepted: the value really is what the text says, and every range holds.
    common.validate(cfg)
    got = cfg
    for part in key.split("."):
        got = got[part]
    if key == "smoke":
        assert got == (value.strip().lower() in common.TRUE)
    elif key == "optimizer.learning_rate":
        assert got == float(value) and got > 0
    else:
        assert got == int(value)
    assert cfg.batch_size >= 1 and cfg.epochs >= 1 and cfg.log_every >= 1
