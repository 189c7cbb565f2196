"""Safe run folders: a rerun continues only the run it belongs to.

Every launcher calls :func:`prepare` before it writes anything into its workdir. The run's
identity is a *fingerprint*: the SHA-256 of the canonical JSON of

    {"kind": launcher kind (pretrain | reward | posttrain | compare),
     "config": the config without the keys that cannot change results (VOLATILE_KEYS),
     "extra": launcher inputs outside the config (e.g. posttrain's --init / --reward_dir)}

stored with that JSON in ``workdir/run.json``. Then

* no ``run.json`` (and no ``config.json`` of an older run): a new run; ``run.json`` is written;
* the same fingerprint: the run continues from its latest checkpoint (the training loop prints
  ``resuming from step N``);
* a different fingerprint: :class:`WorkdirMismatchError` naming every differing key as
  ``key: old → new``;
* ``overwrite=True``: the folder's contents are deleted first (only if it is a run folder),
  and a new run starts.

Folders written before ``run.json`` existed are judged by their ``config.json`` (the launcher
kind is then unknown and not compared). Only the writing process (process 0 of a multi-host
run) writes or deletes; the others only read. This module imports nothing from JAX.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from typing import Any

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"

#: Config keys (dotted) that change how a run is logged, saved or evaluated in batches, never
#: its numbers; they are left out of the fingerprint so that, e.g., logging more often resumes.
#: ``mesh``: a checkpoint restores onto any mesh (same numbers up to float reassociation);
#: ``data.pack_shapes``: packed-row counts only drop empty rows (the same numbers, likewise).
VOLATILE_KEYS = ("log_every", "checkpoint_every", "keep_checkpoints", "cache_dir", "download",
                 "mesh", "eval.batch_size", "data.pack_shapes")

__all__ = ["RUN_FILE", "VOLATILE_KEYS", "WorkdirMismatchError", "describe_differences",
           "fingerprint", "identity", "prepare"]


class WorkdirMismatchError(ValueError):
    """The workdir holds a run with another config / launcher: resuming would mislabel it."""


def _config_dict(cfg) -> dict:
    if hasattr(cfg, "to_dict"):  # ConfigDict (nested blocks included)
        return json.loads(json.dumps(cfg.to_dict(), default=_jsonable))
    if isinstance(cfg, Mapping):
        return json.loads(json.dumps(dict(cfg), default=_jsonable))
    raise TypeError(f"config must be a mapping or ConfigDict, got {type(cfg).__name__}")


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for name in parents:
        node = node.get(name)
        if not isinstance(node, dict):
            return
    node.pop(leaf, None)


def _canonical(obj) -> Any:
    """Tuples become lists (JSON has only lists), so a config read back from JSON compares
    equal to the live one."""
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def identity(cfg, kind: str, extra: Mapping[str, Any] | None = None) -> dict:
    """The fingerprinted part of a run: ``{"kind", "config" (minus VOLATILE_KEYS), "extra"}``."""
    config = _config_dict(cfg)
    for key in VOLATILE_KEYS:
        _drop(config, key)
    return _canonical({"kind": str(kind), "config": config, "extra": dict(extra or {})})


def fingerprint(ident: Mapping[str, Any]) -> str:
    """SHA-256 (hex, first 16 digits) of the canonical JSON (sorted keys) of ``ident``."""
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _flatten(tree, prefix: str = "") -> dict[str, Any]:
    out = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        if not tree and prefix:
            out[prefix[:-1]] = {}
    else:
        out[prefix[:-1]] = tree
    return out


_MISSING = "<absent>"


def describe_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``["key: old → new", ...]`` over the flattened identities (``config.`` prefix dropped;
    the launcher kind shows as ``launcher``, extra inputs by their own names)."""
    def flat(ident):
        out = {}
        for key, value in _flatten(dict(ident)).items():
            if key == "kind":
                key = "launcher"
            elif key.startswith("config."):
                key = key[len("config."):]
            elif key.startswith("extra."):
                key = "--" + key[len("extra."):]
            out[key] = value
        return out

    a, b = flat(old), flat(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if va != vb:
            lines.append(f"{key}: {_show(va)} → {_show(vb)}")
    return lines


def _show(value) -> str:
    return value if value is _MISSING else repr(value)


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise WorkdirMismatchError(
            f"{path} is unreadable ({type(err).__name__}: {err}); pass --overwrite to delete "
            "the run in that folder, or use another --workdir") from None
    return obj if isinstance(obj, dict) else None


def _previous(workdir: str) -> dict | None:
    """The previous run's identity, from ``run.json`` or else a legacy ``config.json``."""
    record = _read_json(os.path.join(workdir, RUN_FILE))
    if record is not None and "identity" in record:
        return record["identity"]
    config = _read_json(os.path.join(workdir, CONFIG_FILE))
    if config is None:
        return None
    return {"kind": None, "config": config}


def _is_run_folder(workdir: str) -> bool:
    return any(os.path.exists(os.path.join(workdir, name))
               for name in (RUN_FILE, CONFIG_FILE, "checkpoints", "metrics.jsonl"))


def _clear(workdir: str) -> None:
    for name in os.listdir(workdir):
        path = os.path.join(workdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def prepare(workdir: str | os.PathLike, cfg, kind: str, *, overwrite: bool = False,
            extra: Mapping[str, Any] | None = None, write: bool = True) -> str:
    """Checks (and records) that ``workdir`` belongs to this run; see the module docstring.

    Args:
      workdir: the run folder (created when ``write``).
      cfg: the final config (after every override).
      kind: the launcher (``pretrain``, ``reward``, ``posttrain``, ``compare``).
      overwrite: delete the folder's contents first (a run folder only), whatever it holds.
      extra: inputs outside the config that change results (paths of --init / --reward_dir).
      write: False on processes other than 0: check only, never write or delete.

    Returns ``"new"``, ``"resume"`` or ``"overwritten"``. Raises :class:`WorkdirMismatchError`
    (nothing written) when the folder holds another run (or checkpoints of an unknown one) and
    ``overwrite`` is False, or when ``overwrite`` would delete a non-empty folder that is not a
    run folder.
    """
    workdir = os.fspath(workdir)
    ident = identity(cfg, kind, extra)
    status = "new"
    exists = os.path.isdir(workdir) and bool(os.listdir(workdir))
    if overwrite and exists:
        if not _is_run_folder(workdir):
            raise WorkdirMismatchError(
                f"--overwrite: {workdir} is not empty and is not a run folder (no {RUN_FILE}, "
                f"{CONFIG_FILE} or checkpoints/); refusing to delete it. Use another --workdir.")
        status = "overwritten"
    elif exists:
        previous = _previous(workdir)
        if previous is None and os.path.exists(os.path.join(workdir, "checkpoints")):
            raise WorkdirMismatchError(
                f"workdir {workdir} holds checkpoints of an unknown run (no {RUN_FILE} or "
                f"{CONFIG_FILE}); refusing to resume it. Pass --overwrite to delete that run "
                "and start again, or use another --workdir.")
        if previous is not None:
            if previous.get("kind") is None:  # a folder from before run.json: compare configs
                prev = {"kind": None, "config": identity(previous["config"], "")["config"],
                        "extra": {}}
                now = {"kind": None, "config": ident["config"], "extra": {}}
            else:
                prev, now = previous, ident
            if fingerprint(prev) != fingerprint(now):
                diffs = describe_differences(prev, now)
                raise WorkdirMismatchError(
                    f"workdir {workdir} holds a different run ({'; '.join(diffs)}); refusing "
                    "to resume it. Pass --overwrite to delete that run and start again, or use "
                    "another --workdir.")
            status = "resume"
    if not write:
        return status
    if status == "overwritten":
        _clear(workdir)
    os.makedirs(workdir, exist_ok=True)
    record = {"fingerprint": fingerprint(ident), "identity": ident,
              "volatile_keys": list(VOLATILE_KEYS)}
    path = os.path.join(workdir, RUN_FILE)
    old = _read_json(path) if status == "resume" else None
    record["created"] = (old or {}).get("created", time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                  time.gmtime()))
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=True, default=_jsonable)
    os.replace(tmp, path)
    return status

