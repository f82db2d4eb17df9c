"""Labelled data in .npz (select --eval-data, compress / eval --eval-data): the size limit holds before any array
is read, even for a compressed archive whose file is small."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.runtimes.errors import UsageError


@pytest.fixture
def bomb(tmp_path, monkeypatch):
    """A 4.7 kB file whose arrays expand to 4 MiB of zeros, with a 1 MiB limit."""
    monkeypatch.setenv("EDGEKIT_MAX_INPUT_MB", "1")
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, inputs=np.zeros((16, 1, 128, 128), np.float32), images=np.zeros((16, 1, 128, 128), np.float32),
                        labels=np.zeros((16, 128, 128), np.int64))
    assert path.stat().st_size < 100_000
    return path


def test_select_eval_data_refuses_an_archive_that_expands_past_the_limit(bomb):
    from edgekit.search.eval_data import load_eval_data

    with pytest.raises(UsageError, match=r"--eval-data .*bomb.npz: its arrays expand to \d+ bytes, more than the 1048576 byte limit"):
        load_eval_data(bomb)


def test_compress_data_refuses_an_archive_that_expands_past_the_limit(bomb):
    from edgekit.compress.data import load_npz

    with pytest.raises(UsageError, match=r"--eval-data .*bomb.npz: its arrays expand to \d+ bytes, more than the 1048576 byte limit"):
        load_npz(bomb, "--eval-data")
