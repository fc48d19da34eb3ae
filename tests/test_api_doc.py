"""README.md's "Python API" section is a page a notebook user follows: its examples run, with their outputs, as
written (doctest, from the repository's root, on files in sample_models/). `verify`'s examples run Keras, so the
page runs in a subprocess of its own (Keras never enters the test process) and only where tf_keras is installed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import ROOT

RUN = """
import doctest, re, sys
text = open("README.md", encoding="utf-8").read()
section = re.search(r"^## Python API\\n(.*?)^## ", text, re.S | re.M).group(1)
# the ```python fences are the page's; doctest reads the >>> lines and their outputs between them
test = doctest.DocTestParser().get_doctest(section.replace("```python", "").replace("```", ""), {}, "README.md",
                                          "README.md", 0)
runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
runner.run(test)
print(f"examples {len(test.examples)}")
sys.exit(1 if runner.failures else 0)
"""


def test_the_python_api_page_runs_as_written() -> None:
    if importlib.util.find_spec("tf_keras") is None:
        pytest.skip("the page's verify examples need Keras (the keras extra)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", RUN], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=env)
    assert done.returncode == 0, done.stdout[-6000:]
    assert int(done.stdout.split("examples ")[-1]) >= 30  # the page is not silently empty
