"""Test files share helpers through tests/helpers/ and conftest.py, never by importing one
another (a test file imported by another runs its module code twice and couples the two)."""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# "from tests.test_x import", "from .test_x import", "import tests.test_x", "from tests import test_x"
TEST_IMPORT = re.compile(r"^[ \t]*(?:from\s+(?:tests\.|\.)test_\w+\s+import|import\s+tests\.test_\w+"
                         r"|from\s+(?:tests|\.)\s+import\s+.*\btest_\w+)", re.MULTILINE)


def test_no_test_file_imports_another_test_file():
    files = sorted(TESTS.glob("test_*.py"))
    assert len(files) > 10
    offenders = {p.name: TEST_IMPORT.findall(p.read_text(encoding="utf-8")) for p in files}
    assert not {name: found for name, found in offenders.items() if found}


def test_the_check_sees_each_form_of_import():
    for line in ("from tests.test_nodes_host import base_graph", "from .test_workflows import ui_files",
                 "import tests.test_formats_host", "from tests import test_core_fidelity",
                 "    from tests.test_motion_files_host import plain_graph"):
        assert TEST_IMPORT.search(line), line
    for line in ("from tests.helpers.graphs import base_graph", "from tests import helpers"):
        assert not TEST_IMPORT.search(line), line
