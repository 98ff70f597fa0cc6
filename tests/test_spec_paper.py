"""The `paper:` key that study files and transfer-matrix specs share is read by one helper
(`yaml_file.read_paper`): both files accept the same captions and refuse the same bad values with the
same line, naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketlab.errors import TicketlabError
from ticketlab.lottery.matrix_spec import load_spec
from ticketlab.lottery.study import load_study

DIGITS = Path(__file__).resolve().parents[1] / "configs" / "digits_lenet.yaml"
STUDY = f"config: {DIGITS}\n"
MATRIX = "targets: {t: {config: c.yaml}}\nsources: {s: [init.mode=mask]}\n"


def _load(kind: str, path, text: str):
    path.write_text(text)
    return load_study(path) if kind == "study" else load_spec(path)


@pytest.mark.parametrize("bad", ["3", "''", "'   '", "[Fig. 2c]", "{fig: 2c}"])
def test_both_spec_files_refuse_a_bad_paper_with_the_same_line(tmp_path, bad):
    lines = {}
    for kind, body in (("study", STUDY), ("matrix", MATRIX)):
        path = tmp_path / f"{kind}.yaml"
        with pytest.raises(TicketlabError) as e:
            _load(kind, path, f"paper: {bad}\n{body}")
        lines[kind] = str(e.value).replace(str(path), "FILE").replace(kind, "KIND")
        assert "\n" not in str(e.value) and str(e.value).startswith(f"{path}: paper: expected the figure or table "
                                                                    f"the {kind} reproduces, as text")
    assert lines["study"] == lines["matrix"]


def test_both_spec_files_keep_a_caption_and_default_to_none(tmp_path):
    study = _load("study", tmp_path / "s.yaml", "paper: '001 Fig. 2c: global vs layer-wise'\n" + STUDY)
    assert study.paper == "001 Fig. 2c: global vs layer-wise"
    assert _load("matrix", tmp_path / "m.yaml", "paper: '002 Fig. 3: x'\n" + MATRIX).paper == "002 Fig. 3: x"
    assert _load("study", tmp_path / "s.yaml", STUDY).paper is None
    assert _load("matrix", tmp_path / "m.yaml", MATRIX).paper is None
