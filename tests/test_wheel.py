"""The wheel is the product: built from this checkout, installed into a fresh virtual environment, it works.

A user installs ipmcam with ``pip install``, not from a checkout, so the
model, the presets and the demo media must be package data, and nothing but
``ipmcam`` may land at the top of site-packages. The fresh environment gets
the wheel alone (``--no-deps``) and borrows the already-installed third-party
packages through a path entry, so the test needs no network; it runs from a
folder outside the checkout, so nothing can come from ``src/``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("ipmcam/weights/lite/generator.onnx", "ipmcam/weights/lite/generator.int8.onnx",
           "ipmcam/weights/lite/style_encoder.onnx", "ipmcam/weights/lite/ipmnet.safetensors",
           "ipmcam/weights/lite/manifest.json", "ipmcam/presets/natural.toml", "ipmcam/presets/bare.toml",
           "ipmcam/assets/demo.mp4", "ipmcam/assets/reference.jpg")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy of the tracked files: the shared checkout's build/ and egg-info stay untouched.
    src = out / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        target = src / name
        if (REPO / name).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((REPO / name).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, text=True)
    (path,) = out.glob("ipmcam-*.whl")
    return path


def test_wheel_holds_one_package_with_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"ipmcam"}
    for shipped in SHIPPED:
        assert shipped in names, f"{shipped} is missing from the wheel"
    assert not [n for n in names if n.endswith("train_state.pt")], "the training state must stay out of the wheel"
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]


def test_installed_wheel_runs_the_demo_with_the_model_and_lists_presets(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    # Third-party packages from this environment; its .pth files (the editable checkout) are not read from there.
    (purelib / "third_party.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, text=True)
    run = dict(cwd=tmp_path, capture_output=True, text=True, timeout=600)
    where = subprocess.run([str(python), "-c", "import ipmcam; print(ipmcam.__file__)"], **run)
    assert Path(where.stdout.strip()).is_relative_to(purelib), where.stdout
    presets = subprocess.run([str(bin_dir / "ipmcam"), "presets"], **run)
    assert presets.returncode == 0, presets.stderr
    assert "natural" in presets.stdout and "bold-red-lip" in presets.stdout
    demo = subprocess.run([str(bin_dir / "ipmcam"), "demo", "--out", "out"], **run)
    assert demo.returncode == 0, demo.stderr
    assert "(ipmnet/onnxruntime" in demo.stdout, demo.stdout
    assert (tmp_path / "out" / "demo.mp4").stat().st_size > 10_000
    assert (tmp_path / "out" / "demo_before_after.png").is_file()
