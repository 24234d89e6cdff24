"""Named extensions: eager and lazy entries, a lazy module imported on first look-up only, and a missing extra
reported by name without importing anything."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshbatch import extras
from meshbatch.registry import Extensions


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for throwaway extension modules."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("mb_test_")]:
        del sys.modules[name]



def write(folder: Path, module: str, body: str) -> None:
    (folder / f"{module}.py").write_text(body)


def test_eager_entries_and_unknown_names() -> None:
    registry: Extensions[int] = Extensions("thing")
    registry.register("one")(1)
    assert registry.get("one") == 1 and "one" in registry and "two" not in registry
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("one")(2)
    with pytest.raises(KeyError, match="unknown thing 'two'; known: one"):
        registry.get("two")


def test_a_lazy_entry_is_imported_on_first_look_up_only(plugin_dir: Path) -> None:
    write(plugin_dir, "mb_test_host", "from meshbatch.registry import Extensions\nREGISTRY = Extensions('widget')\n")
    write(plugin_dir, "mb_test_lazy", "from mb_test_host import REGISTRY\nREGISTRY.register('late')('L')\n")
    registry: Extensions[str] = importlib.import_module("mb_test_host").REGISTRY
    registry.lazy("late", "mb_test_lazy")
    assert "late" in registry and registry.names() == ["late"]
    assert "mb_test_lazy" not in sys.modules and registry.loaded() == []
    assert registry.get("late") == "L"
    assert "mb_test_lazy" in sys.modules and registry.loaded() == ["late"]
    assert registry.get("late") == "L"  # once
    assert registry.unavailable("late") is None
    with pytest.raises(ValueError, match="registered twice"):
        registry.lazy("late", "mb_test_lazy")


def test_a_module_that_does_not_register_its_name_is_an_error(plugin_dir: Path) -> None:
    write(plugin_dir, "mb_test_silent", "X = 1\n")
    registry: Extensions[str] = Extensions("widget")
    registry.lazy("quiet", "mb_test_silent")
    with pytest.raises(RuntimeError, match="mb_test_silent does not register widget 'quiet'"):
        registry.get("quiet")


def test_a_missing_extra_is_named_with_the_command_that_installs_it(plugin_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(extras.EXTRAS, "fancy", ("mb_test_absent_lib",))
    write(plugin_dir, "mb_test_needs_lib", "import mb_test_absent_lib\n")
    registry: Extensions[str] = Extensions("widget")
    registry.lazy("fancy", "mb_test_needs_lib", extra="fancy")
    why = registry.unavailable("fancy")
    assert why == "widget 'fancy' needs the 'fancy' extra: pip install 'meshbatch[fancy]'"
    assert "mb_test_needs_lib" not in sys.modules  # answered without importing
    with pytest.raises(extras.MissingExtraError, match=r"pip install 'meshbatch\[fancy\]'") as info:
        registry.get("fancy")
    assert info.value.extra == "fancy" and "widget 'fancy'" in str(info.value)


def test_an_unrelated_import_error_is_not_blamed_on_the_extra(plugin_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(extras.EXTRAS, "fancy", ("mb_test_absent_lib",))
    write(plugin_dir, "mb_test_broken", "import mb_test_some_other_missing_module\n")
    registry: Extensions[str] = Extensions("widget")
    registry.lazy("broken", "mb_test_broken", extra="fancy")
    with pytest.raises(ModuleNotFoundError) as info:
        registry.get("broken")
    assert not isinstance(info.value, extras.MissingExtraError)
