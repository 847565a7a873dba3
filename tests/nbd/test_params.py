"""The plugin parameters blockfmt-nbd writes are the ones the plugin reads back."""

from __future__ import annotations

import pytest

from blockfmt.errors import InvalidOptionError
from blockfmt.nbd.export import CacheMode, DiscardMode, ExportSettings
from blockfmt.nbd.params import PluginParams, ThreadModel, parse_params


def as_pairs(args: list[str]) -> list[tuple[str, str]]:
    """Split ``key=value`` words the way nbdkit does (at the first ``=``)."""
    return [tuple(arg.split("=", 1)) for arg in args]  # type: ignore[misc]


@pytest.mark.parametrize(
    "params",
    [
        PluginParams(ExportSettings("/images/a=b.vhdx")),
        PluginParams(
            ExportSettings(
                "d.vhdx", "vhdx", True, CacheMode.UNSAFE, DiscardMode.UNMAP, {"log_replay": "memory"}
            ),
            ThreadModel.SERIALIZE_ALL_REQUESTS,
            multi_conn=True,
        ),
    ],
)
def test_parameters_round_trip(params):
    assert parse_params(as_pairs(params.to_args())) == params


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([], "missing parameter 'file'"),
        ([("file", "x"), ("colour", "red")], "unknown parameter 'colour'"),
        ([("file", "x"), ("readonly", "yes")], "parameter 'readonly' expects 'on' or 'off', not 'yes'"),
        ([("file", "x"), ("discard", "maybe")], "Invalid discard mode `maybe'"),
        ([("file", "x"), ("open-option", "novalue")], "open-option 'novalue' is not KEY=VALUE"),
        (
            [("file", "x"), ("thread-model", "serial")],
            "parameter 'thread-model' expects one of parallel, serialize_all_requests, not 'serial'",
        ),
    ],
)
def test_bad_parameters_are_refused_with_a_message(pairs, message):
    with pytest.raises(InvalidOptionError) as caught:
        parse_params(pairs)
    assert caught.value.message == message
