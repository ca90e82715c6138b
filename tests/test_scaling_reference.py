"""--reference tables (task,gamma[,label]) as spreadsheets save them, and bad ones in one line."""

import pytest

from slmjax.analysis.scaling import downstream
from slmjax.analysis.scaling.errors import FitInputError


@pytest.mark.parametrize("data", [
    "\ufefftask,gamma,label\nsblimp,0.05,pythia\ntsc,0.03,pythia\n".encode("utf-8"),   # Excel's UTF-8 BOM
    b"task, gamma, label\nsblimp, 0.05, pythia\n tsc ,0.03,pythia \n",                  # padded cells
])
def test_reference_as_saved_by_spreadsheets(tmp_path, data):
    """A byte-order mark or spaces after the commas made a table with both columns fail with
    'needs columns task,gamma'."""
    p = tmp_path / "ref.csv"
    p.write_bytes(data)
    assert downstream.read_reference(str(p)) == {"pythia": {"sblimp": 0.05, "tsc": 0.03}}


@pytest.mark.parametrize("data,message", [
    ("task,gamma,label\nsblimp,0.05,Pythia \u00e9\n".encode("latin-1"),
     "line 2 of the reference table is not UTF-8 text (byte 0xe9); save it as UTF-8"),   # was UnicodeDecodeError
    (b"task,gamma\nsblimp\n", "row 1 of the reference table has no gamma"),               # was TypeError
    (b"task,gamma\nsblimp,0.05\n,0.04\n", "row 2 of the reference table has no task"),    # was task ''
    (b"task,gamma\nsblimp,nan\n", "gamma 'nan' for task sblimp is not a finite number"),  # was a NaN ratio
    (b"task,gamma\nsblimp,inf\n", "gamma 'inf' for task sblimp is not a finite number"),
    (b"task,gamma\n", "reference table has no rows"),
])
def test_bad_reference_one_clear_line(tmp_path, data, message):
    p = tmp_path / "ref.csv"
    p.write_bytes(data)
    with pytest.raises(FitInputError) as e:
        downstream.read_reference(str(p))
    assert str(e.value).startswith(f"{p}: {message}")
    assert "\n" not in str(e.value)
