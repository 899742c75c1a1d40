"""HTML reduced to a safe, well-formed XHTML subset, for ebooks and for HTML given to LibreOffice.

Only text structure survives: no scripts, styles, frames, forms, event handlers or links to other
files. An image is kept only when the caller maps its source to a file of the job's own; every
other `src` is dropped, so LibreOffice never fetches a URL or reads a local file such as
`file:///etc/passwd` while rendering.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from html.parser import HTMLParser

ALLOWED = {
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "em",
    "strong",
    "b",
    "i",
    "u",
    "s",
    "a",
    "ul",
    "ol",
    "li",
    "blockquote",
    "pre",
    "code",
    "br",
    "hr",
    "img",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "tr",
    "td",
    "th",
    "caption",
    "span",
    "div",
    "sup",
    "sub",
    "figure",
    "figcaption",
    "section",
    "article",
    "dl",
    "dt",
    "dd",
    "small",
    "abbr",
    "cite",
    "q",
    "mark",
}
VOID = {"br", "hr", "img"}
# Elements dropped together with everything inside them.
DROP_WITH_CONTENT = {
    "script",
    "style",
    "head",
    "title",
    "template",
    "noscript",
    "iframe",
    "object",
    "embed",
    "svg",
    "math",
    "frameset",
    "frame",
    "form",
    "select",
    "textarea",
    "button",
    "audio",
    "video",
    "canvas",
}
ATTRIBUTES = {
    "a": {"href", "title", "id"},
    "img": {"alt", "title"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}
COMMON = {"id", "lang", "dir"}
SAFE_HREF = re.compile(r"^(#[\w.:-]*|https?://[^\s\"'<>]+|mailto:[^\s\"'<>]+)$", re.IGNORECASE)
SAFE_ID = re.compile(r"^[A-Za-z_][\w.:-]{0,100}$")
BLOCKS = {
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "blockquote",
    "pre",
    "tr",
    "div",
    "section",
    "article",
    "dt",
    "dd",
    "figcaption",
    "caption",
    "br",
    "hr",
}

ImageMap = Callable[[str], str | None]


class _Cleaner(HTMLParser):
    def __init__(self, images: ImageMap | None) -> None:
        super().__init__(convert_charrefs=True)
        self.images = images
        self.out: list[str] = []
        self.stack: list[str] = []
        self.dropping = 0
        self.title = ""
        self._in_title = False
        self.headings: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        if tag == "title":
            self._in_title = True
        if tag in DROP_WITH_CONTENT:
            if tag not in VOID:
                self.dropping += 1
            return
        if self.dropping or tag not in ALLOWED:
            return
        kept = self._attributes(tag, dict(attrs))
        if tag == "img" and "src" not in kept:
            alt = kept.get("alt")
            if alt:
                self.out.append(html.escape(alt))
            return
        rendered = "".join(f' {k}="{html.escape(v, quote=True)}"' for k, v in kept.items())
        if tag in VOID:
            self.out.append(f"<{tag}{rendered}/>")
        else:
            self.out.append(f"<{tag}{rendered}>")
            self.stack.append(tag)

    def _attributes(self, tag: str, attrs: dict[str, str | None]) -> dict[str, str]:
        kept: dict[str, str] = {}
        for name, value in attrs.items():
            name = name.lower()
            if value is None or not (name in COMMON or name in ATTRIBUTES.get(tag, set())):
                continue
            if name == "href" and not SAFE_HREF.match(value.strip()):
                continue
            if name == "id" and not SAFE_ID.match(value):
                continue
            if name in {"colspan", "rowspan"} and not value.isdigit():
                continue
            kept[name] = value.strip()
        if tag == "img" and self.images is not None and (src := attrs.get("src")):
            mapped = self.images(src.strip())
            if mapped:
                kept["src"] = mapped
        return kept

    def handle_endtag(self, tag: str) -> None:
        tag = tag.lower()
        if tag == "title":
            self._in_title = False
        if tag in DROP_WITH_CONTENT:
            self.dropping = max(0, self.dropping - 1)
            return
        if self.dropping or tag not in self.stack:
            return
        while self.stack:
            open_tag = self.stack.pop()
            self.out.append(f"</{open_tag}>")
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self.dropping:
            return
        self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        while self.stack:
            self.out.append(f"</{self.stack.pop()}>")
        return "".join(self.out)


def clean(markup: str, images: ImageMap | None = None) -> tuple[str, str]:
    """(safe XHTML fragment of the body, the document's <title> text)."""
    cleaner = _Cleaner(images)
    cleaner.feed(markup)
    cleaner.close()
    return cleaner.result(), " ".join(cleaner.title.split())


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.dropping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROP_WITH_CONTENT:
            self.dropping += 1
        elif tag in BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in DROP_WITH_CONTENT:
            self.dropping = max(0, self.dropping - 1)
        elif tag in BLOCKS:
            self.parts.append("\n")
        elif tag in {"td", "th"}:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.parts.append(data)


def to_text(markup: str) -> str:
    """Readable plain text: one line per block, blank lines between paragraphs collapsed."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def document(title: str, body: str, lang: str = "en") -> str:
    """A complete XHTML document around a cleaned body."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n'
        f'<html xmlns="http://www.w3.org/1999/xhtml" lang="{html.escape(lang)}" '
        f'xml:lang="{html.escape(lang)}">\n<head><meta charset="utf-8"/>'
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body>\n</html>\n"
    )
