"""`meshbatch_build_info`: one sample of 1 whose labels name the version, the Python and whether the hot path is the
compiled build."""

from __future__ import annotations

import platform

from prometheus_client.parser import text_string_to_metric_families

from meshbatch import __version__
from meshbatch.telemetry.build import build_labels, register_build_info
from meshbatch.telemetry.metrics import Registry


def test_compiled_is_read_from_the_hot_path_module_file() -> None:
    assert build_labels("/x/meshbatch/http/server.cpython-312-x86_64-linux-gnu.so")[2] == "true"
    assert build_labels("C:/x/meshbatch/http/server.cp312-win_amd64.pyd")[2] == "true"
    assert build_labels("/x/meshbatch/http/server.py")[2] == "false"
    assert build_labels(None)[2] == "false"


def test_build_info_is_one_sample_of_one() -> None:
    registry = Registry()
    register_build_info(registry, "/x/server.py")
    text = registry.render().decode()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "meshbatch_build_info"]
    assert family.type == "gauge"
    (sample,) = family.samples
    assert sample.value == 1.0
    assert sample.labels == {"version": __version__, "python": platform.python_version(), "compiled": "false"}
