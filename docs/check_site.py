"""Check the built HTML site: no dead internal link or anchor, no page wider than a phone.

Run it on a build (``python -m sphinx -b html docs docs/_build/html`` first)::

    python docs/check_site.py docs/_build/html            # links, anchors and widths
    python docs/check_site.py docs/_build/html --no-width # links and anchors only

**Links.** Every ``href``/``src`` of every page that is not an absolute URL must name a file of
the site, and its ``#anchor``, if any, an ``id`` (or ``name``) on that page.

**Width.** Each page is loaded in headless Chromium (the Debian package ``chromium``) inside an
iframe 400 px wide, the width of a phone, after MathJax has typeset the maths; the page's
``scrollWidth`` must not exceed 400 px. Maths and wide tables may be wider, inside a box that
scrolls on its own: those do not widen the page. The site is copied to a temporary folder and
a small script is added to each copy's pages to report the width; the build is not changed.

Exit status 0 when everything passes, 1 otherwise (each problem is printed). The test suite
runs the same checks (``tests/repository/test_docs.py``); its width test is skipped where Chromium is not
installed, except under ``DASH_REQUIRE_BROWSER=1`` (CI), where that is a failure. Set
``DASH_CHROMIUM`` to use another Chromium executable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["CHROMIUM_FLAGS", "dead_links", "find_chromium", "page_widths", "site_pages"]

VIEWPORT_PX = 400
#: How headless Chromium is started: no network, no GPU, nothing remembered between runs.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")  # fmt: skip


def site_pages(out: Path) -> list[Path]:
    """The HTML pages of a built site (the highlighted sources of ``_modules/`` included)."""
    return sorted(p for p in out.rglob("*.html") if not p.relative_to(out).as_posix().startswith("_static/"))


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name") if tag != "meta" else ():
            if values.get(key):
                self.ids.add(values[key] or "")
        if tag in ("a", "link", "area") and values.get("href"):
            self.links.append(values["href"] or "")
        if tag in ("img", "script", "iframe", "source") and values.get("src"):
            self.links.append(values["src"] or "")


def _parse(page: Path) -> _Refs:
    refs = _Refs()
    refs.feed(page.read_text(encoding="utf-8", errors="replace"))
    refs.close()
    return refs


def dead_links(out: Path) -> list[str]:
    """Every internal link of the site whose file or anchor does not exist, as ``page: link``."""
    out = out.resolve()
    parsed: dict[Path, _Refs] = {}

    def refs(page: Path) -> _Refs:
        if page not in parsed:
            parsed[page] = _parse(page)
        return parsed[page]

    dead = []
    for page in site_pages(out):
        for link in refs(page).links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):
                continue  # http(s):, mailto:, data:, javascript:
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(out).as_posix()}: {link}"
            if not target.is_file() or out not in target.parents:
                dead.append(f"{where} (no such file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in refs(target).ids:
                dead.append(f"{where} (no such anchor)")
    return dead


def find_chromium() -> str | None:
    """The Chromium executable: ``$DASH_CHROMIUM``, else ``chromium`` on the PATH."""
    return os.environ.get("DASH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


# Added to each copied page: once loaded and typeset, report the page's width to the harness.
_PROBE = """<script>
window.addEventListener("load", function () {
  var typeset = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
  typeset.then(function () { setTimeout(function () {
    var width = document.documentElement.scrollWidth, wide = [];
    document.querySelectorAll("body *").forEach(function (el) {
      var r = el.getBoundingClientRect();
      if (r.right > window.innerWidth + 1 && wide.length < 3 && el.children.length === 0) {
        wide.push(el.tagName.toLowerCase() + (el.className ? "." + String(el.className).split(" ").join(".") : ""));
      }
    });
    parent.postMessage({page: %s, width: width, wide: wide}, "*");
  }, 50); });
});
</script>"""

_HARNESS = """<!doctype html><html><body><pre id="dash-widths"></pre><script>
var pages = %s, results = [], i = 0, timer = null;
window.addEventListener("message", function (e) { results.push(e.data); next(); });
function next() {
  clearTimeout(timer);
  var old = document.getElementById("frame"); if (old) old.remove();
  if (i >= pages.length) {
    document.getElementById("dash-widths").textContent = "DASH-WIDTHS " + JSON.stringify(results);
    return;
  }
  var page = pages[i++], f = document.createElement("iframe");
  f.id = "frame"; f.style.width = "%dpx"; f.style.height = "900px"; f.style.border = "0"; f.src = page;
  timer = setTimeout(function () {
    results.push({page: page, width: null, wide: ["no report: timed out"]}); next();
  }, 20000);
  document.body.appendChild(f);
}
next();
</script></body></html>"""


def page_widths(out: Path, chromium: str, pages: list[str] | None = None, width: int = VIEWPORT_PX,
                timeout_s: float = 600) -> dict[str, tuple[int | None, list[str]]]:  # fmt: skip
    """Load each page 400 px wide in headless Chromium; return ``{page: (scrollWidth, widest elements)}``.

    ``pages`` are paths relative to ``out`` (default: every page but the highlighted sources).
    """
    out = out.resolve()
    if pages is None:
        pages = [p.relative_to(out).as_posix() for p in site_pages(out)
                 if not p.relative_to(out).as_posix().startswith("_modules/")]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dash-width-") as tmp:
        site = Path(tmp) / "site"
        shutil.copytree(out, site)
        for rel in pages:
            path = site / rel
            html = path.read_text(encoding="utf-8")
            probe = _PROBE % json.dumps(rel)
            path.write_text(html.replace("</body>", probe + "</body>", 1), encoding="utf-8")
        harness = site / "__dash_widths.html"
        harness.write_text(_HARNESS % (json.dumps(pages), width), encoding="utf-8")
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}", "--window-size=1200,1000",
               f"--virtual-time-budget={int(25_000 * len(pages))}", "--dump-dom", harness.as_uri()]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    found = re.search(r"DASH-WIDTHS (\[.*?\])</pre>", proc.stdout, flags=re.DOTALL)
    if not found:
        raise RuntimeError(f"chromium gave no widths (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    results = json.loads(
        found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    )
    return {r["page"]: (r["width"], r["wide"]) for r in results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the built HTML folder, e.g. docs/_build/html")
    parser.add_argument("--no-width", action="store_true", help="skip the width check (no Chromium needed)")
    args = parser.parse_args(argv)
    problems = [f"dead link: {d}" for d in dead_links(args.site)]
    checked = len(site_pages(args.site))
    print(f"links and anchors: {checked} pages, {len(problems)} dead")
    if not args.no_width:
        chromium = find_chromium()
        if chromium is None:
            print("width: chromium not found (apt-get install chromium, or set DASH_CHROMIUM)", file=sys.stderr)
            return 1
        widths = page_widths(args.site, chromium)
        too_wide = {p: w for p, w in widths.items() if w[0] is None or w[0] > VIEWPORT_PX}
        print(f"width: {len(widths)} pages at {VIEWPORT_PX} px, {len(too_wide)} wider")
        problems += [f"too wide: {p}: {w[0]} px ({', '.join(w[1])})" for p, w in sorted(too_wide.items())]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
