"""A small EPUB reader and writer: a book is a title, an author, chapters and images.

Reading follows container.xml to the package document and its spine, so books whose `mimetype`
entry is not first (common from older tools) read fine. Chapters are cleaned by `htmlclean`;
images are kept only when the package lists them. Writing makes EPUB 3 with an EPUB 2 NCX for
older readers.
"""

from __future__ import annotations

import dataclasses
import html
import posixpath
import uuid
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from convertd.converters import htmlclean
from convertd.errors import ConversionError

NS = {
    "c": "urn:oasis:names:tc:opendocument:xmlns:container",
    "opf": "http://www.idpf.org/2007/opf",
    "dc": "http://purl.org/dc/elements/1.1/",
}
IMAGE_TYPES = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/svg+xml": None,
    "image/webp": "webp",
}
MAX_ENTRY_BYTES = 64 * 1024**2
MAX_BOOK_BYTES = 512 * 1024**2
MAX_CHAPTERS = 5000


@dataclasses.dataclass
class Chapter:
    title: str
    body: str  # a cleaned XHTML fragment


@dataclasses.dataclass
class Book:
    title: str
    author: str = ""
    language: str = "en"
    chapters: list[Chapter] = dataclasses.field(default_factory=list)
    images: dict[str, bytes] = dataclasses.field(default_factory=dict)  # "images/n.jpg" -> data

    def body_html(self) -> str:
        return "\n".join(
            f'<section id="chapter-{n}">\n{c.body}\n</section>'
            for n, c in enumerate(self.chapters, 1)
        )

    def text(self) -> str:
        parts = [self.title, self.author] + [htmlclean.to_text(c.body) for c in self.chapters]
        return "\n\n".join(p.strip() for p in parts if p.strip()) + "\n"


def _read(zf: zipfile.ZipFile, name: str, budget: list[int]) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ConversionError(f"The EPUB is missing {name}") from None
    if info.file_size > MAX_ENTRY_BYTES:
        raise ConversionError(f"The EPUB entry {name} is too large")
    budget[0] += info.file_size
    if budget[0] > MAX_BOOK_BYTES:
        raise ConversionError("The EPUB is too large once unpacked")
    with zf.open(info) as fh:
        data = fh.read(MAX_ENTRY_BYTES + 1)
    if len(data) > MAX_ENTRY_BYTES:
        raise ConversionError(f"The EPUB entry {name} is too large")
    return data


def _xml(data: bytes, what: str) -> ET.Element:
    if b"<!ENTITY" in data:
        raise ConversionError(f"The EPUB's {what} declares XML entities; refusing it")
    try:
        return ET.fromstring(data)  # noqa: S314 (entity declarations are refused above)
    except ET.ParseError as exc:
        raise ConversionError(f"The EPUB's {what} is not valid XML") from exc


def read_epub(path: Path) -> Book:
    budget = [0]
    try:
        with zipfile.ZipFile(path) as zf:
            container = _xml(_read(zf, "META-INF/container.xml", budget), "container.xml")
            rootfile = container.find(".//c:rootfile", NS)
            if rootfile is None or not rootfile.get("full-path"):
                raise ConversionError("The EPUB's container.xml names no package document")
            opf_path = str(rootfile.get("full-path"))
            opf = _xml(_read(zf, opf_path, budget), "package document")
            base = posixpath.dirname(opf_path)
            book = Book(
                title=(opf.findtext(".//dc:title", "", NS) or "").strip() or Path(path).stem,
                author=(opf.findtext(".//dc:creator", "", NS) or "").strip(),
                language=(opf.findtext(".//dc:language", "", NS) or "en").strip() or "en",
            )
            manifest = {
                item.get("id"): (
                    posixpath.normpath(posixpath.join(base, unquote(item.get("href", "")))),
                    item.get("media-type", ""),
                )
                for item in opf.findall(".//opf:manifest/opf:item", NS)
            }
            images: dict[str, str] = {}  # package path -> name inside our book
            for href, media in manifest.values():
                ext = IMAGE_TYPES.get(media)
                if ext and href in zf.namelist():
                    name = f"images/{len(images) + 1}.{ext}"
                    images[href] = name
                    book.images[name] = _read(zf, href, budget)
            spine = [
                manifest.get(ref.get("idref"))
                for ref in opf.findall(".//opf:spine/opf:itemref", NS)
            ]
            for entry in spine[:MAX_CHAPTERS]:
                if entry is None or "html" not in entry[1]:
                    continue
                href = entry[0]
                markup = _read(zf, href, budget).decode("utf-8", "replace")

                def image_for(src: str, _here: str = href) -> str | None:
                    parts = urlsplit(src)
                    if parts.scheme or parts.netloc:
                        return None
                    target = posixpath.normpath(
                        posixpath.join(posixpath.dirname(_here), unquote(parts.path))
                    )
                    return images.get(target)

                body, title = htmlclean.clean(markup, image_for)
                if body.strip():
                    book.chapters.append(Chapter(title=title or book.title, body=body))
    except zipfile.BadZipFile as exc:
        raise ConversionError("Input is not a valid EPUB (not a zip file)") from exc
    if not book.chapters:
        raise ConversionError("The EPUB has no readable chapters")
    return book


def _opf(book: Book, book_id: str) -> str:
    items = [
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>',
        '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>',
    ]
    items += [
        f'<item id="c{n}" href="chapter-{n}.xhtml" media-type="application/xhtml+xml"/>'
        for n in range(1, len(book.chapters) + 1)
    ]
    media = {v: k for k, v in IMAGE_TYPES.items() if v}
    items += [
        f'<item id="i{n}" href="{name}" media-type="{media[name.rsplit(".", 1)[1]]}"/>'
        for n, name in enumerate(book.images, 1)
    ]
    spine = "".join(f'<itemref idref="c{n}"/>' for n in range(1, len(book.chapters) + 1))
    esc = html.escape
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">\n'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">\n'
        f'<dc:identifier id="id">urn:uuid:{book_id}</dc:identifier>\n'
        f"<dc:title>{esc(book.title)}</dc:title>\n"
        + (f"<dc:creator>{esc(book.author)}</dc:creator>\n" if book.author else "")
        + f"<dc:language>{esc(book.language)}</dc:language>\n"
        '<meta property="dcterms:modified">2000-01-01T00:00:00Z</meta>\n'
        "</metadata>\n<manifest>\n" + "\n".join(items) + "\n</manifest>\n"
        f'<spine toc="ncx">{spine}</spine>\n</package>\n'
    )


def _nav(book: Book) -> str:
    entries = "".join(
        f'<li><a href="chapter-{n}.xhtml">{html.escape(c.title)}</a></li>'
        for n, c in enumerate(book.chapters, 1)
    )
    body = (
        f'<nav xmlns:epub="http://www.idpf.org/2007/ops" epub:type="toc"><ol>{entries}</ol></nav>'
    )
    return htmlclean.document(book.title, body, book.language)


def _ncx(book: Book, book_id: str) -> str:
    points = "".join(
        f'<navPoint id="p{n}" playOrder="{n}"><navLabel><text>{html.escape(c.title)}</text>'
        f'</navLabel><content src="chapter-{n}.xhtml"/></navPoint>'
        for n, c in enumerate(book.chapters, 1)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">'
        f'<head><meta name="dtb:uid" content="urn:uuid:{book_id}"/></head>'
        f"<docTitle><text>{html.escape(book.title)}</text></docTitle>"
        f"<navMap>{points}</navMap></ncx>\n"
    )


CONTAINER = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
    '<rootfiles><rootfile full-path="OEBPS/content.opf" '
    'media-type="application/oebps-package+xml"/></rootfiles></container>\n'
)


def write_epub(book: Book, dst: Path) -> None:
    book_id = str(uuid.uuid5(uuid.NAMESPACE_URL, book.title + book.author))
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        # The mimetype entry first and stored, as the OCF specification requires.
        zf.writestr(
            zipfile.ZipInfo("mimetype"), "application/epub+zip", compress_type=zipfile.ZIP_STORED
        )
        zf.writestr("META-INF/container.xml", CONTAINER)
        zf.writestr("OEBPS/content.opf", _opf(book, book_id))
        zf.writestr("OEBPS/nav.xhtml", _nav(book))
        zf.writestr("OEBPS/toc.ncx", _ncx(book, book_id))
        for n, chapter in enumerate(book.chapters, 1):
            zf.writestr(
                f"OEBPS/chapter-{n}.xhtml",
                htmlclean.document(chapter.title, chapter.body, book.language),
            )
        for name, data in book.images.items():
            zf.writestr(f"OEBPS/{name}", data)
