"""The offline build scripts (edgekit/tools/) still build valid export requests and parse their options,
without running for minutes: a renamed pipeline option fails here, not on the next rebuild."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.tools import accuracy_data, slm_quantize


@pytest.mark.parametrize("tool", [accuracy_data, slm_quantize])
def test_each_tool_prints_its_options(tool, capsys):
    with pytest.raises(SystemExit) as info:
        tool.main(["--help"])
    assert info.value.code == 0 and "usage:" in capsys.readouterr().out


def test_the_requests_they_export_with(tmp_path):
    from edgekit.models.ofa import get_space, largest

    request = accuracy_data.precision_request("ofa-mbv3-tiny", "default", largest(get_space("ofa-mbv3-tiny")), "int8",
                                              tmp_path / "int8")
    assert (request.output.precision, request.measure.runs, request.model.subnet is not None) == ("int8", 0, True)
    request = slm_quantize.fp32_request("slm-encdec", tmp_path / "fp32")
    assert (request.model.ref, request.out, request.measure.runs) == ("slm-encdec", Path(tmp_path / "fp32"), 0)
