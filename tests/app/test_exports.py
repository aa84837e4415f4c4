"""CSV exports neutralise cells a spreadsheet would run as formulas (issue 17, item 7)."""

from __future__ import annotations

import csv
import io

import pytest

from app.exports import neutralize
from app.processing.service import write_lesion_files
from app.studies.results import answers_csv

HOSTILE = ['=HYPERLINK("http://evil","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


@pytest.mark.parametrize("text", HOSTILE)
def test_formula_prefixes_are_neutralised(text):
    assert neutralize(text) == "'" + text


def test_plain_text_and_numbers_are_kept():
    assert neutralize("radiology") == "radiology"
    assert neutralize(-3.5) == -3.5 and neutralize(0) == 0 and neutralize(None) is None


def test_a_readers_specialty_is_exported_as_text():
    row = {"study_id": 1, "reader": "R1", "experience_years": 3,
           "specialty": "=HYPERLINK(\"http://evil\",\"click\")", "case": "@case"}  # fmt: skip
    table = list(csv.DictReader(io.StringIO(answers_csv([row]))))
    assert table[0]["specialty"] == '\'=HYPERLINK("http://evil","click")'
    assert table[0]["case"] == "'@case" and table[0]["experience_years"] == "3"


def test_lesion_table_cells_are_neutralised(tmp_path):
    lesion = {"index": 1, "voxels": 10, "volume_ml": 0.5, "longest_axial_diameter_mm": 4.0,
              "centroid_mm": ["=cmd|' /C calc'!A0", -12.5, 3.0], "mean_hu": -40.0}  # fmt: skip
    write_lesion_files(tmp_path, [lesion], {"model": "demo"})
    rows = list(csv.reader((tmp_path / "lesions.csv").open(encoding="utf-8")))
    assert rows[1][4] == "'=cmd|' /C calc'!A0"
    assert rows[1][5:] == ["-12.5", "3.0", "-40.0"]
