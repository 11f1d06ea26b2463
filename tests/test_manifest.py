"""Tests of manifest reading, validation and subject splits."""

import math

import pytest

from facepad.errors import ManifestError
from facepad.manifest import read_manifest, split_by_subject

HEADER = "image,subject,cheek_left,cheek_right,undereye_left,undereye_right"


@pytest.fixture
def photo_dir(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        (tmp_path / name).write_bytes(b"not read by the manifest reader")
    return tmp_path


def write(folder, text):
    path = folder / "manifest.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_read_manifest_valid_rows(photo_dir):
    manifest = read_manifest(write(photo_dir, f"{HEADER}\na.jpg,s1,0.1,0.2,,0.4\nb.jpg,s2,1,0,0.5,0.5\n"))
    assert len(manifest.rows) == 2
    first = manifest.rows[0]
    assert first.image == (photo_dir / "a.jpg").resolve()
    assert first.subject == "s1"
    assert first.scores["cheek_right"] == pytest.approx(0.2)
    assert math.isnan(first.scores["undereye_left"])
    assert first.row_number == 2


def test_read_manifest_missing_column(photo_dir):
    with pytest.raises(ManifestError, match="lacks the column.*subject"):
        read_manifest(write(photo_dir, "image,cheek_left\na.jpg,0.3\n"))


def test_read_manifest_without_score_columns(photo_dir):
    with pytest.raises(ManifestError, match="no score column"):
        read_manifest(write(photo_dir, "image,subject\na.jpg,s1\n"))
    assert len(read_manifest(write(photo_dir, "image,subject\na.jpg,s1\n"), require_labels=False).rows) == 1


def test_read_manifest_score_outside_range_names_row(photo_dir):
    with pytest.raises(ManifestError, match=r"manifest\.csv row 3: cheek_left=1\.4 is outside \[0, 1\]"):
        read_manifest(write(photo_dir, f"{HEADER}\na.jpg,s1,0.1,0.2,0.3,0.4\nb.jpg,s2,1.4,0,0,0\n"))


def test_read_manifest_score_not_a_number(photo_dir):
    with pytest.raises(ManifestError, match=r"row 2: undereye_right='high' is not a number"):
        read_manifest(write(photo_dir, f"{HEADER}\na.jpg,s1,0.1,0.2,0.3,high\n"))


def test_read_manifest_missing_photo(photo_dir):
    with pytest.raises(ManifestError, match=r"row 2: image 'missing\.jpg' not found"):
        read_manifest(write(photo_dir, f"{HEADER}\nmissing.jpg,s1,0.1,0.2,0.3,0.4\n"))


def test_read_manifest_duplicate_row(photo_dir):
    with pytest.raises(ManifestError, match=r"row 3: image 'a\.jpg' is already listed in row 2"):
        read_manifest(write(photo_dir, f"{HEADER}\na.jpg,s1,0.1,0.2,0.3,0.4\na.jpg,s1,0.1,0.2,0.3,0.4\n"))


def test_read_manifest_subject_in_two_splits(photo_dir):
    text = f"{HEADER},split\na.jpg,s1,0.1,0.2,0.3,0.4,train\nb.jpg,s1,0.1,0.2,0.3,0.4,val\n"
    with pytest.raises(ManifestError, match="subject 's1' is in split 'val' here but in 'train' in row 2"):
        read_manifest(write(photo_dir, text))


def test_read_manifest_unknown_split(photo_dir):
    with pytest.raises(ManifestError, match="split='holdout' is not one of"):
        read_manifest(write(photo_dir, f"{HEADER},split\na.jpg,s1,0.1,0.2,0.3,0.4,holdout\n"))


def test_read_manifest_grades(photo_dir):
    manifest = read_manifest(write(photo_dir, f"{HEADER},cheek_left_grade\na.jpg,s1,0.1,0.2,0.3,0.4,2\n"))
    assert manifest.grade_columns == ("cheek_left",)
    assert manifest.rows[0].grades == {"cheek_left": 2}
    with pytest.raises(ManifestError, match="cheek_left_grade='2.5' is not a non-negative integer grade"):
        read_manifest(write(photo_dir, f"{HEADER},cheek_left_grade\na.jpg,s1,0.1,0.2,0.3,0.4,2.5\n"))


def test_read_manifest_all_unlabelled(photo_dir):
    with pytest.raises(ManifestError, match="no labelled score"):
        read_manifest(write(photo_dir, f"{HEADER}\na.jpg,s1,,,,\n"))


def test_read_manifest_empty_subject(photo_dir):
    with pytest.raises(ManifestError, match="row 2: the subject column is empty"):
        read_manifest(write(photo_dir, f"{HEADER}\na.jpg,,0.1,0.2,0.3,0.4\n"))


def test_split_by_subject_keeps_subjects_apart(photo_dir):
    rows = "\n".join(f"{name},s{i % 2},0.1,0.2,0.3,0.4" for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg", "d.jpg"]))
    manifest = read_manifest(write(photo_dir, f"{HEADER}\n{rows}\n"))
    train, val = split_by_subject(manifest, 0.2, seed=0)
    assert len(train) == 2
    assert len(val) == 2
    assert not {r.subject for r in train} & {r.subject for r in val}
    assert split_by_subject(manifest, 0.2, seed=0) == (train, val)


def test_split_by_subject_uses_split_column(photo_dir):
    text = f"{HEADER},split\na.jpg,s1,0.1,0.2,0.3,0.4,train\nb.jpg,s2,0.1,0.2,0.3,0.4,val\nc.jpg,s3,0,0,0,0,test\n"
    train, val = split_by_subject(read_manifest(write(photo_dir, text)), 0.5, seed=0)
    assert [r.subject for r in train] == ["s1"]
    assert [r.subject for r in val] == ["s2"]


def test_read_manifest_misspelled_column(photo_dir):
    header = "image,subject,cheek_left,cheek_right,undereye_left,undereye_rigth"
    with pytest.raises(ManifestError, match="column 'undereye_rigth', which is not a known column; "
                                            "did you mean 'undereye_right'"):
        read_manifest(write(photo_dir, f"{header}\na.jpg,s1,0.1,0.2,0.3,0.4\n"))


def test_read_manifest_extra_columns_ignored(photo_dir):
    manifest = read_manifest(write(photo_dir, f"{HEADER},age,visit\na.jpg,s1,0.1,0.2,0.3,0.4,54,2\n"))
    assert manifest.score_columns == ("cheek_left", "cheek_right", "undereye_left", "undereye_right")
