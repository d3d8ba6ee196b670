"""The dashboard's files: every module they import is shipped, nothing comes from elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

from hub.api.ui import STATIC

_IMPORT = re.compile(r"""(?:from\s+|import\s*\(\s*)["']([^"']+)["']""")
_REF = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


def _files(*suffixes: str) -> list[Path]:
    return sorted(p for p in STATIC.rglob("*") if p.suffix in suffixes)


def test_every_imported_module_is_shipped() -> None:
    modules = _files(".js")
    assert len(modules) >= 10
    for module in modules:
        if "vendor" in module.parts:
            continue
        for target in _IMPORT.findall(module.read_text()):
            assert target.startswith("."), f"{module.name} imports {target!r}: not a local file"
            assert (module.parent / target).resolve().is_file(), f"{module.name}: {target} missing"


def test_pages_refer_only_to_the_hubs_own_files() -> None:
    for page in _files(".html", ".js"):
        text = page.read_text()
        if "vendor" in page.parts:
            continue
        assert not re.search(r"https?://", text), f"{page.name} refers to another site"
        for ref in _REF.findall(text):
            if ref.startswith(("#", "data:")):
                continue
            assert ref.startswith("/ui/static/"), f"{page.name}: {ref}"
            assert (STATIC / ref.removeprefix("/ui/static/")).is_file(), f"{page.name}: {ref}"


def test_the_vendored_chart_library_keeps_its_licence() -> None:
    vendor = STATIC / "vendor" / "uplot"
    assert "MIT License" in (vendor / "LICENSE").read_text()
    assert (vendor / "uPlot.iife.min.js").stat().st_size > 10_000
    assert Path(vendor / "README.md").read_text().startswith("# uPlot ")
