"""What a user gets by cloning or installing the pack: one dependency list (requirements.txt
for ComfyUI Manager and the README's ``pip install -r``, pyproject.toml for the Comfy
registry), a license, and no binaries or archives committed outside the folders meant for
them (a stray wheel or checkpoint is downloaded by every user, forever)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[1]

BINARY_EXTENSIONS = {".whl", ".zip", ".tar", ".gz", ".tgz", ".7z", ".rar", ".pt", ".pth", ".ckpt", ".bin", ".gguf",
                     ".so", ".dll", ".exe", ".npz", ".npy", ".safetensors"}
MAX_TEXT_BYTES = 1 << 20  # a larger file is data, whatever its name
# (folder, extensions): where binaries belong; the folder itself, not its subfolders
ALLOWED_BINARIES = {
    "bench/models": {".safetensors"},                 # the tiny shapes models the demo and benchmarks run
    "docs": {".png"},                                 # figures of the docs
    "docs/screenshots": {".jpg"},                     # the README's screenshots
    "example_workflows": {".jpg"},                    # template thumbnails (render_thumbnails.py)
    "example_workflows/input": {".mp4"},              # the self-test's reference clip
}


def _requirement(line: str) -> str:
    return re.sub(r"\s+", "", line).lower()


def requirements_txt() -> list[str]:
    lines = (line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text("utf-8").splitlines())
    return [_requirement(line) for line in lines if line]


def pyproject_dependencies() -> list[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    with open(REPO / "pyproject.toml", "rb") as fh:
        return [_requirement(d) for d in tomllib.load(fh)["project"]["dependencies"]]


def test_pyproject_and_requirements_list_the_same_dependencies():
    assert pyproject_dependencies() == requirements_txt(), \
        "pyproject.toml's [project] dependencies and requirements.txt differ: keep the two lists the same"
    assert {"requests>=2.28", "tqdm"} <= set(requirements_txt())  # the headless runner's


def test_the_license_is_the_one_pyproject_names():
    text = (REPO / "LICENSE").read_text("utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 The ComfyUI-FastVMT authors" in text
    assert re.search(r'^license\s*=\s*\{\s*text\s*=\s*"MIT"\s*\}', (REPO / "pyproject.toml").read_text("utf-8"),
                     re.MULTILINE)


def misplaced_binaries(files: dict[str, tuple[int, bool]]) -> list[str]:
    """The files (path -> (size, git sees it as binary)) that are binaries, archives or
    large files outside the folder and extension allowed for them."""
    bad = []
    for path, (size, binary) in sorted(files.items()):
        p = PurePosixPath(path)
        ext = p.suffix.lower()
        if not (binary or ext in BINARY_EXTENSIONS or size > MAX_TEXT_BYTES):
            continue
        if ext not in ALLOWED_BINARIES.get(str(p.parent), set()):
            bad.append(f"{path} ({size} bytes{', binary' if binary else ''})")
    return bad


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout


def tracked_files() -> dict[str, tuple[int, bool]]:
    """Every file ``git ls-files`` lists: its size and whether git treats it as binary (as
    ``git diff --numstat`` does, .gitattributes included)."""
    empty_tree = _git("hash-object", "-t", "tree", "/dev/null").strip()
    binary = set()
    for entry in _git("diff", "--cached", "--numstat", "-z", empty_tree).split("\0"):
        if entry.startswith("-\t-\t"):
            binary.add(entry[4:])
    files = {}
    for path in _git("ls-files", "-z").split("\0"):
        if path and (REPO / path).is_file():  # deleted in the work tree, not yet in the index: skip
            files[path] = ((REPO / path).stat().st_size, path in binary)
    return files


def test_no_binary_or_archive_is_committed_outside_its_folder():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout (or no git): the committed files cannot be listed")
    files = tracked_files()
    assert "README.md" in files and "bench/models/tiny_wan_shapes.safetensors" in files
    bad = misplaced_binaries(files)
    assert not bad, ("binary, archive or large files tracked outside the folders meant for them "
                     f"({', '.join(sorted(ALLOWED_BINARIES))}): {bad}; remove them with git rm (or, if one belongs "
                     "in the repository, add its folder and extension to ALLOWED_BINARIES here)")


def test_the_binary_check_is_not_vacuous():
    allowed = {"bench/models/tiny_wan_shapes.safetensors": (9_000_000, True), "docs/figure.png": (70_000, True),
               "example_workflows/input/clip.mp4": (140_000, True), "nodes/motion.py": (12_000, False),
               "bench/results/run.json": (80_000, False)}
    assert misplaced_binaries(allowed) == []
    stray = {"pyflakes-4.1.0-py2.py3-none-any.whl": (70_000, True), "bench/models/sub/model.safetensors": (9, True),
             "docs/figure.jpg": (70_000, True), "weights.pt": (10, False), "nodes/blob.dat": (10, True),
             "bench/results/huge.json": (2 << 20, False), "example_workflows/archive.tar.gz": (10, True)}
    assert len(misplaced_binaries(stray)) == len(stray)
