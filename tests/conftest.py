"""Test setup: 8 forced CPU devices, set before JAX is imported anywhere."""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def ml100k_dir():
    """Path of the local MovieLens 100K copy; tests using it skip when absent."""
    path = SHARED_DATA / "ml-100k"
    if not (path / "u.data").exists():
        pytest.skip(f"MovieLens 100K not found at {path}")
    return path
