"""The dashboard's files: every module they import is shipped, nothing comes from elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

from hub.api.ui import STATIC

_IMPORT = re.compile(r"""(?:from\s+|import\s*\(\s*)["']([^"']+)["']""")
_REF = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


#: the dashboard's own files (the directory also holds the API docs' viewer)
_PAGES = (STATIC / "index.html", STATIC / "login.html")


def _files(*suffixes: str) -> list[Path]:
    modules = sorted(p for p in (STATIC / "js").rglob("*") if p.suffix in suffixes)
    return [p for p in _PAGES if p.suffix in suffixes] + modules


def test_every_imported_module_is_shipped() -> None:
    modules = _files(".js")
    assert len(modules) >= 10
    for module in modules:
        for target in _IMPORT.findall(module.read_text()):
            assert target.startswith("."), f"{module.name} imports {target!r}: not a local file"
            assert (module.parent / target).resolve().is_file(), f"{module.name}: {target} missing"


def test_pages_refer_only_to_the_hubs_own_files() -> None:
    for page in _files(".html", ".js"):
        text = page.read_text()
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
