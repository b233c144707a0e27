"""Reading an import file, CSV or XLSX, as numbered rows of text, one at a time.

A row is `(line, {header: text})` where `line` is the row's line in the file as a
spreadsheet shows it (the header is line 1), so that a refused row can be found. CSV is
read as UTF-8 (with or without Excel's byte order mark) or, failing that, as GB18030:
offices in China save CSV from Excel in the local code page. XLSX is read by openpyxl in
read-only mode, a row at a time. Empty rows are skipped; cells are stripped of spaces.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import BinaryIO

from points.errors import InvalidInputError

# A file larger than this is refused before it is read (a year of a district's paper
# books is about 1.4 million rows, about 80 MB as CSV).
MAX_FILE_BYTES = 200 * 1024 * 1024

Row = tuple[int, dict[str, str]]


def file_problem(message: str) -> InvalidInputError:
    return InvalidInputError(message, errors={"file": [message]})


def is_xlsx(name: str, start: bytes) -> bool:
    """An XLSX file is a ZIP archive: its first bytes say so whatever its name."""
    return start[:4] == b"PK\x03\x04" or name.lower().endswith(".xlsx")


def sha256_of(opener: Callable[[], BinaryIO]) -> tuple[str, int]:
    """The file's sha256 (hex) and size, read a piece at a time."""
    digest, size = hashlib.sha256(), 0
    with opener() as stream:
        while piece := stream.read(1 << 20):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size


def read_rows(name: str, opener: Callable[[], BinaryIO]) -> tuple[list[str], Iterator[Row]]:
    """Return the file's headers and an iterator over its rows, reading the file that
    `opener()` opens (binary) a piece at a time.

    Raises InvalidInputError (field `file`) for an empty, unreadable or headerless file,
    or a header repeated.
    """
    with opener() as stream:
        start = stream.read(4)
    if not start:
        raise file_problem("文件是空的 / The file is empty.")
    rows = _xlsx_rows(opener) if is_xlsx(name, start) else _csv_rows(opener)
    try:
        first = next(rows)
    except StopIteration:
        raise file_problem("文件没有表头行 / The file has no header row.") from None
    headers = [cell.strip() for cell in first]
    if not any(headers):
        raise file_problem(
            "文件第一行是空的，应写明各列名称 / "
            "The file's first row is empty: it must name the columns."
        )
    named = [h for h in headers if h]
    if len(set(named)) != len(named):
        repeated = sorted({h for h in named if named.count(h) > 1})
        raise file_problem(
            f"列名重复：{', '.join(repeated)} / Columns named twice: {', '.join(repeated)}."
        )

    def numbered() -> Iterator[Row]:
        for line, cells in enumerate(rows, start=2):
            values = {
                header: cells[i].strip() if i < len(cells) else ""
                for i, header in enumerate(headers)
                if header
            }
            if any(values.values()):
                yield line, values

    return headers, numbered()


def _encoding(opener: Callable[[], BinaryIO]) -> str:
    """UTF-8 if the whole file decodes as UTF-8, else GB18030 if it decodes as that (each
    read a piece at a time); else the file is not text."""
    for encoding, name in (("utf-8", "utf-8-sig"), ("gb18030", "gb18030")):
        decoder = codecs.getincrementaldecoder(encoding)()
        with opener() as stream:
            try:
                while piece := stream.read(1 << 20):
                    decoder.decode(piece)
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                continue
        return name
    raise file_problem(
        "文件既不是 CSV 文本（UTF-8 或 GB18030）也不是 XLSX 表格 / "
        "The file is neither a CSV text (UTF-8 or GB18030) nor an XLSX workbook."
    )


def _csv_rows(opener: Callable[[], BinaryIO]) -> Iterator[list[str]]:
    encoding = _encoding(opener)

    def rows() -> Iterator[list[str]]:
        with opener() as stream:
            text = io.TextIOWrapper(stream, encoding=encoding, newline="")
            sample = text.read(4096)
            if "\x00" in sample:
                raise file_problem(
                    "文件不是 CSV 文本（含有 NUL 字符）/ "
                    "The file is not a CSV text file (it holds NUL characters)."
                )
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",\t;")
            except csv.Error:
                dialect = csv.excel
            text.seek(0)
            reader = csv.reader(text, dialect)
            try:
                for cells in reader:
                    if any("\x00" in cell for cell in cells):
                        raise file_problem(
                            f"第 {reader.line_num} 行含有 NUL 字符 / "
                            f"Line {reader.line_num}: a NUL character."
                        )
                    yield cells
            except csv.Error as error:
                raise file_problem(
                    f"第 {reader.line_num} 行无法读取 / Line {reader.line_num}: {error}."
                ) from None

    return rows()


def _xlsx_rows(opener: Callable[[], BinaryIO]) -> Iterator[list[str]]:
    import openpyxl

    # A workbook is a ZIP of XML written by anyone: openpyxl meets a broken one with
    # whatever its parsers raise (BadZipFile, KeyError, ParseError, ValueError...), so
    # any failure to read it is the file's problem, told as such.
    try:
        book = openpyxl.load_workbook(opener(), read_only=True, data_only=True)
        sheet = book.worksheets[0]
    except Exception as error:
        raise _unreadable(error) from None

    def rows() -> Iterator[list[str]]:
        try:
            for cells in sheet.iter_rows(values_only=True):
                yield [_cell_text(value) for value in cells]
        except InvalidInputError:
            raise
        except Exception as error:
            raise _unreadable(error) from None
        finally:
            book.close()

    return rows()


def _unreadable(error: Exception) -> InvalidInputError:
    return file_problem(
        f"无法读取的 XLSX 表格 / Not a readable XLSX workbook ({error.__class__.__name__})."
    )


def _cell_text(value) -> str:
    """A spreadsheet cell as the text a CSV of it would hold: dates as ISO dates, whole
    numbers without a trailing .0."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (
            value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
        )
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
