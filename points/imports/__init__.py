"""Imports of paper records, opening balances and rosters into a node.

Public: FIELDS (each kind's fields); ColumnMapping, check_mapping, saved_mapping,
save_mapping (a node's mapping per kind); start_run(node, kind, file_name, opener,
mapping, *, actor, dry_run) -> run id; execute_run(run_id, node, opener, progress=None)
-> ImportRun; run_file(node, kind, file_name, opener, mapping=None, *, actor, ...) -> the
finished ImportRun (both, in this thread); problems_of(run_id); read_rows(name, opener)
(a file's headers and rows).

Split by job: `files` (CSV and XLSX as numbered rows), `mapping` (a node's names for
our fields and values), `rows` (one row's fields checked and typed), `runs` (a run:
staging, posting through the service layer, counts, refused rows). See
docs/imports.md.
"""

from points.imports.files import read_rows
from points.imports.mapping import FIELDS, ColumnMapping, check_mapping, save_mapping, saved_mapping
from points.imports.runs import execute_run, problems_of, run_file, start_run

__all__ = [
    "FIELDS",
    "ColumnMapping",
    "check_mapping",
    "execute_run",
    "problems_of",
    "read_rows",
    "run_file",
    "save_mapping",
    "saved_mapping",
    "start_run",
]
