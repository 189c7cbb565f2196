"""The README's losses example runs as written."""
import os
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
HEADING = "## Using the losses in your own JAX project"


def _example_code() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(HEADING) + len(HEADING)
    section = text[start:]
    next_heading = re.search(r"^## ", section, flags=re.MULTILINE)  # (python comments: "# ")
    if next_heading:
        section = section[:next_heading.start()]
    block = re.search(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert block, f"no ```python block under {HEADING!r}"
    return block.group(1)


def test_readme_example_imports_only_the_losses():
    code = _example_code()
    imported = set(re.findall(r"^\s*(?:from|import)\s+([\w.]+)", code, flags=re.MULTILINE))
    assert imported <= {"jax", "jax.numpy", "numpy", "optax", "genrec_jax"}, imported
    assert "from genrec_jax import losses" in code


def test_readme_example_runs():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", _example_code()], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "A-SFT final loss" in proc.stdout and "DPO final loss" in proc.stdout
