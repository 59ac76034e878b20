"""pytest fixtures for running graphs inside real ComfyUI (see the comfy_host package).

Fixtures (session scope):
    comfy        -> ComfyHost: ComfyUI booted in-process (skips if ComfyUI is
                    missing, unless FASTVMT_REQUIRE_COMFYUI=1: then it fails)
    run_graph    -> comfy.run_graph
    fastvmt_pack -> node names registered by the FastVMT pack (errors clearly
                    if the pack is missing or fails to import)
    tiny_wan     -> UNETLoader name of a 16-block dim-256 random Wan 2.1 T2V
    tiny_wan30   -> same with 30 blocks
    tiny_wan48   -> 48 in/out channels (Wan 2.2 5B style, detected as WAN22)
    tiny_vae     -> VAELoader name of a random-weight Wan 2.1 VAE (cached on disk)

Tests using ``comfy`` (directly or through another fixture) get the ``host``
marker.  With FASTVMT_REQUIRE_COMFYUI=1 (CI) the run fails unless host tests ran
and passed and none was skipped.
"""
import os

import pytest

import comfy_host

_REQUIRE_ENV = "FASTVMT_REQUIRE_COMFYUI"
_host_tests = {"passed": 0, "failed": 0, "skipped": 0, "collected": 0}
_finish_message = []


def _required() -> bool:
    return os.environ.get(_REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def pytest_configure(config):
    config.addinivalue_line("markers", "host: runs inside real ComfyUI (in-process executor, tiny random models)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "comfy" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.host)


def pytest_collection_finish(session):
    # after deselection (-m / -k): what will actually be run
    _host_tests["collected"] = sum(1 for item in session.items if item.get_closest_marker("host"))


def pytest_runtest_logreport(report):
    if "host" not in report.keywords:
        return
    if report.when == "call":
        if report.passed:
            _host_tests["passed"] += 1
        elif report.failed:
            _host_tests["failed"] += 1
        elif report.skipped:
            _host_tests["skipped"] += 1
    elif report.when == "setup" and report.skipped:
        _host_tests["skipped"] += 1
    elif report.when == "setup" and report.failed:
        _host_tests["failed"] += 1


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):  # pytest-xdist worker: the controller decides
        return
    if _required() and (_host_tests["passed"] == 0 or _host_tests["skipped"]):
        _finish_message.append(
            f"FastVMT: {_REQUIRE_ENV}=1 but " + ("no test ran and passed inside real ComfyUI " if not
                                                 _host_tests["passed"] else "host tests were skipped ")
            + f"({_host_tests['collected']} host tests collected, {_host_tests['skipped']} skipped, "
            f"{_host_tests['failed']} failed): every host test must run in CI")
        if session.exitstatus in (0, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if hasattr(config, "workerinput"):
        return
    if not (_host_tests["collected"] or _host_tests["passed"] or _required()):
        return
    host = comfy_host.get_host()
    version = (host.version if host is not None else None) or comfy_host.comfyui_version()
    n = _host_tests["passed"]
    where = f"ComfyUI {version}" if version else "ComfyUI (not found)"
    line = f"FastVMT: {n} test{'s' if n != 1 else ''} ran inside real {where}"
    if _host_tests["skipped"]:
        line += f" ({_host_tests['skipped']} host tests skipped)"
    terminalreporter.write_line(line)
    for msg in _finish_message:
        terminalreporter.write_line(msg, red=True, bold=True)


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """ComfyUI booted in this process (real executor, CPU mode, temp dirs)."""
    required = _required()
    path = comfy_host.find_comfyui()
    if path is None:
        msg = ("ComfyUI not found: set COMFYUI_PATH or check out ComfyUI at ~/comfy/ComfyUI "
               "(or place this repo at ComfyUI/custom_nodes/<pack>)")
        if required:
            pytest.fail(f"{msg} [{_REQUIRE_ENV}=1]", pytrace=False)
        pytest.skip(msg)
    try:
        host = comfy_host.bootstrap(tmp_path_factory.getbasetemp() / "comfy_base", comfyui_path=path)
    except Exception as e:  # noqa: BLE001
        import traceback
        msg = f"could not boot ComfyUI from {path}: {type(e).__name__}: {e}"
        if required:
            pytest.fail(f"{msg} [{_REQUIRE_ENV}=1]\n{traceback.format_exc()}", pytrace=False)
        pytest.skip(msg)
    return host


@pytest.fixture(scope="session")
def run_graph(comfy):
    """``comfy.run_graph``: validate + execute an API-format graph."""
    return comfy.run_graph


@pytest.fixture(scope="session")
def fastvmt_pack(comfy):
    """Node names of the FastVMT pack as loaded by ComfyUI's load_custom_node."""
    return comfy.require_pack()


@pytest.fixture(scope="session")
def tiny_wan(comfy):
    """UNETLoader name: random Wan 2.1 T2V, dim 256, 16 blocks, 16 channels."""
    return comfy.tiny_wan(dim=256, num_layers=16, in_dim=16, out_dim=16, ffn_dim=512)


@pytest.fixture(scope="session")
def tiny_wan30(comfy):
    """UNETLoader name: random Wan 2.1 T2V, dim 256, 30 blocks."""
    return comfy.tiny_wan(dim=256, num_layers=30, in_dim=16, out_dim=16, ffn_dim=512)


@pytest.fixture(scope="session")
def tiny_wan48(comfy):
    """UNETLoader name: random Wan (2.2 5B style) with 48 in/out channels."""
    return comfy.tiny_wan(dim=256, num_layers=16, in_dim=48, out_dim=48, ffn_dim=512)


@pytest.fixture(scope="session")
def tiny_vae(comfy):
    """VAELoader name: random-weight Wan 2.1 VAE (built once, cached on disk)."""
    return comfy.tiny_vae()
