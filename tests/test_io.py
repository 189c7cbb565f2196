"""genrec_jax.io.write_json: the one atomic JSON writer."""

import json
import math

import numpy as np
import pytest

from genrec_jax.io import write_json


def test_writes_sorted_indented_json_in_a_new_folder(tmp_path):
    path = tmp_path / "a" / "b" / "metrics.json"
    out = write_json(path, {"b": 1, "a": [1.5, np.float32(0.25)], "c": np.int64(3)})
    assert out == str(path)
    assert path.read_text() == '{\n  "a": [\n    1.5,\n    0.25\n  ],\n  "b": 1,\n  "c": 3.0\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]      # no .tmp left


def test_key_order_and_non_finite_values(tmp_path):
    obj = {"z": math.nan, "a": [math.inf, 1.0, (-math.inf, 2)]}
    strict = write_json(tmp_path / "strict.json", obj, sort_keys=False, nonfinite_as_null=True)
    with open(strict) as f:
        text = f.read()
    assert list(json.loads(text)) == ["z", "a"]
    assert json.loads(text) == {"z": None, "a": [None, 1.0, [None, 2]]}
    loose = write_json(tmp_path / "loose.json", obj)
    with open(loose) as f:
        assert f.read().split() == ['{', '"a":', '[', 'Infinity,', '1.0,', '[', '-Infinity,', '2',
                                    ']', '],', '"z":', 'NaN', '}']


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "report.json"
    write_json(path, {"version": 1})
    with pytest.raises(TypeError):
        write_json(path, {"version": 2, "bad": object()})
    assert json.loads(path.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
