#!/usr/bin/env python3
"""``python fastvmt_runner.py ...``: the headless runner under its old name, for scripts
that call it so. The runner is the package ``fastvmt_runner/`` next to this file (also
``python -m fastvmt_runner``)."""
import importlib.util
import os
import sys


def _runner_package():
    """The package next to this file, whatever the working directory and sys.path (this
    file may run with -I or -P, or be loaded by path, with its folder not on sys.path)."""
    folder = os.path.join(os.path.dirname(os.path.realpath(__file__)), "fastvmt_runner")
    loaded = sys.modules.get("fastvmt_runner")
    if loaded is not None and [os.path.realpath(p) for p in getattr(loaded, "__path__", ())] == [folder]:
        return loaded
    spec = importlib.util.spec_from_file_location("fastvmt_runner", os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    package = importlib.util.module_from_spec(spec)
    sys.modules["fastvmt_runner"] = package
    spec.loader.exec_module(package)
    return package


if __name__ == "__main__":
    _runner_package().main()
