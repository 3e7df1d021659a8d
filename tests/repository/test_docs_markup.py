"""The checker for leaked markup in the built HTML, tested on small pages it must flag or pass.

A reader must never see reST or Markdown syntax: ``double backticks``, ``*emphasis*`` that did
not render, ```link <url>`_`` syntax, raw TeX (``\\(``, ``$$``, ``:math:``) outside the math
that MathJax renders. :func:`find_leaked_markup` reads the text a browser shows, skipping code
(``<pre>``, ``<code>``, ``<script>``, ``<style>``) and the math elements MathJax typesets;
``tests/repository/test_docs.py`` runs it on every page of the built site.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["find_leaked_markup", "visible_text"]

# Elements whose content is not prose: code, scripts, and the TeX that MathJax typesets.
_SKIP_TAGS = frozenset({"script", "style", "pre", "code", "kbd", "samp", "tt", "textarea", "head", "svg"})
_SKIP_CLASSES = frozenset({"math", "highlight"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
_BLOCK = frozenset(
    {"p", "div", "li", "ul", "ol", "dt", "dd", "dl", "td", "th", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
     "section", "article", "aside", "nav", "header", "footer", "figure", "figcaption", "blockquote", "caption"}
)  # fmt: skip
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})

#: (what leaked, pattern) checked on every line of visible text.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("reST double backticks", re.compile(r"``(?:[^`\n]*``)?")),
    ("reST link syntax `...`_", re.compile(r"`[^`\n]+`__?(?!\w)")),
    ("unrendered reST role", re.compile(r":(?:[a-z]+:)?[a-z]+:`")),
    ("reST directive", re.compile(r"(?:^|\s)\.\. [a-z][\w-]*::")),
    ("Markdown/reST strong emphasis **...**", re.compile(r"(?<![\w*\\])\*\*(?=\S)[^*\n]+?(?<=\S)\*\*(?![\w*])")),
    ("Markdown/reST emphasis *...*", re.compile(r"(?<![\w*\\])\*(?=[^\s*])[^*\n]+?(?<=[^\s*])\*(?![\w*])")),
    ("Markdown link [text](url)", re.compile(r"\[[^\]\n]+\]\((?:https?://|\.{0,2}/|#)[^)\s]*\)")),
    ("raw TeX delimiter \\( \\) \\[ \\]", re.compile(r"\\[()\[\]]")),
    ("raw TeX delimiter $$", re.compile(r"\$\$(?:[^$\n]*\$\$)?")),
    ("raw TeX in $...$", re.compile(r"(?<!\$)\$(?!\$)[^$\n]*\\[A-Za-z]+[^$\n]*(?<!\$)\$(?!\$)")),
)


class _TextCollector(HTMLParser):
    """Collect the visible text of a page as lines (one per block element), with headings apart."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._stack: list[tuple[str, bool, bool]] = []  # (tag, skipped here, cite here)
        self._skip = 0
        self._chunks: list[str] = []
        self._heading: list[str] | None = None
        self.headings: list[str] = []
        self.cites: list[str] = []
        self._cite: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            return
        classes = set((dict(attrs).get("class") or "").split())
        skip = tag in _SKIP_TAGS or bool(classes & _SKIP_CLASSES)
        self._stack.append((tag, skip, tag == "cite"))
        self._skip += skip
        if tag in _BLOCK:
            self._chunks.append("\n")
        if tag in _HEADINGS:
            self._heading = []
        if tag == "cite":
            self._cite = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or not any(t == tag for t, _, _ in self._stack):
            return
        while self._stack:
            open_tag, skip, cite = self._stack.pop()
            self._skip -= skip
            if cite and self._cite is not None:
                self.cites.append("".join(self._cite))
                self._cite = None
            if open_tag in _HEADINGS and self._heading is not None:
                self.headings.append("".join(self._heading).strip())
                self._heading = None
            if open_tag == tag:
                break
        if tag in _BLOCK:
            self._chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self._chunks.append(data)
        if self._heading is not None:
            self._heading.append(data)
        if self._cite is not None:
            self._cite.append(data)

    def lines(self) -> list[str]:
        text = "".join(self._chunks)
        return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def visible_text(html: str) -> list[str]:
    """The lines of prose a browser shows for ``html`` (code, scripts and math left out)."""
    parser = _TextCollector()
    parser.feed(html)
    parser.close()
    return parser.lines()


def find_leaked_markup(html: str) -> list[str]:
    """Describe every piece of reST/Markdown/TeX syntax left in the visible text of ``html``.

    Returns one ``"what leaked: ...context..."`` string per finding; an empty list means clean.
    """
    parser = _TextCollector()
    parser.feed(html)
    parser.close()
    found = []
    for line in parser.lines():
        for what, pattern in _PATTERNS:
            for match in pattern.finditer(line):
                start = max(0, match.start() - 30)
                found.append(f"{what}: ...{line[start : match.end() + 30]}...")
    for cite in parser.cites:  # `text` with single backticks renders as a <cite>, in italics
        found.append(f"single-backtick `...` (rendered as a title reference, use ``...`` for code): {cite}")
    for heading in parser.headings:  # Keep-a-Changelog's "## [1.0.0]" with no link definition
        if re.search(r"\[[A-Za-z0-9][^\]]*\]", heading):
            found.append(f"Markdown link brackets in a heading: {heading}")
    return found


# -- the checker itself -----------------------------------------------------------------------
_PAGE = """<!doctype html><html><head><title>``not shown``</title>
<script>var x = "``code``"; /* *a* */</script><style>p::after {{ content: "**" }}</style></head>
<body><article>{body}</article></body></html>"""

_CLEAN = """
<h1>Quick start</h1>
<p>Call <code class="docutils literal notranslate"><span class="pre">``on_new_data``</span></code> with
<em>all</em> the data, <strong>new data last</strong>. The factor is
<span class="math notranslate nohighlight">\\(\\operatorname{clamp}(\\cos, \\lambda, 1)\\)</span>, and</p>
<div class="math notranslate nohighlight">\\[G = \\sum_i \\alpha (1-\\alpha)^{n-i} g_i\\]</div>
<div class="highlight"><pre>x = a * b * c  # *not* emphasis, **kwargs, `x`_, $$</pre></div>
<p>Shapes like 2*3*4, wildcards like figures/*.py, a product a * b, and f(*args, **kwargs).
Intervals [0, 1] and (0, 1] are prose. An inline sig: <em class="sig-param">**base_kwargs</em>.</p>
<ul><li><p>a list item</p></li></ul>
<h2>0.2.0 - 2026-11-27</h2>
"""

_LEAKS = {
    "reST double backticks": "<h2>4. ``step()``.</h2>",
    "Markdown/reST emphasis *...*": "<p>chunks 1..*j* of the data</p>",
    "Markdown/reST strong emphasis **...**": "<p>this is **important** here</p>",
    "reST link syntax `...`_": "<p>see `the paper <https://arxiv.org/abs/2410.23495>`_ for more</p>",
    "unrendered reST role": "<p>the factor :math:`\\lambda` here, and :class:`DASHWrapper`</p>",
    "raw TeX delimiter \\( \\) \\[ \\]": "<p>the floor \\(\\lambda\\) of the factors</p>",
    "raw TeX delimiter $$": "<p>$$ G = -\\nabla L $$</p>",
    "raw TeX in $...$": "<p>with $\\lambda = 0.3$ as in the paper</p>",
    "Markdown link [text](url)": "<p>read [the guide](https://example.org/guide) first</p>",
    "reST directive": "<p>.. note:: this was meant as a note</p>",
    "single-backtick": "<p>call <cite>on_new_data</cite> once</p>",
    "Markdown link brackets in a heading": "<h2>[Unreleased]</h2>",
}


def test_a_clean_page_passes() -> None:
    html = _PAGE.format(body=_CLEAN)
    assert find_leaked_markup(html) == []
    text = visible_text(html)
    assert "Quick start" in text and not any("not shown" in line or "var x" in line for line in text)
    assert not any("operatorname" in line for line in text)  # math is MathJax's, not prose


def test_each_kind_of_leak_is_found() -> None:
    for what, body in _LEAKS.items():
        found = find_leaked_markup(_PAGE.format(body=_CLEAN + body))
        assert len(found) >= 1 and all(f.startswith(what) for f in found), (what, found)


def test_a_leak_is_reported_with_its_context() -> None:
    found = find_leaked_markup(_PAGE.format(body="<p>The heading of the page shows ``step()`` raw.</p>"))
    assert found == ["reST double backticks: ...The heading of the page shows ``step()`` raw...."]


def test_a_leak_split_over_inline_elements_is_found() -> None:
    # The text of inline elements is joined: "*" + "j" + "*" leaks as "*j*".
    assert find_leaked_markup(_PAGE.format(body="<p>chunks 1..*<span>j</span>* here</p>"))


def test_text_after_skipped_elements_is_still_checked() -> None:
    body = "<p><code>``ok``</code> then <pre>``ok``</pre> and ``leak``</p>"
    found = find_leaked_markup(_PAGE.format(body=body))
    assert len(found) == 1 and "``leak``" in found[0], found
