"""lidar.translation / lidar.rotation: the pickled 3-list and 4-list real nuPlan logs hold.

The bytes are checked by parsing the pickle opcodes (``pickletools.genops``), never by unpickling.
"""

from __future__ import annotations

import pickle
import pickletools
import sqlite3
import struct

import pytest

from pluto_dvc.nuplan.log_writer import sensor_extrinsics_blobs


def _float_list(blob: bytes) -> list[float]:
    """The floats of a pickled flat list of floats, read from the opcode stream (no execution)."""
    ops = list(pickletools.genops(blob))
    names = [op.name for op, _, _ in ops]
    assert names[0] == "PROTO" and names[-1] == "STOP"
    assert "EMPTY_LIST" in names
    allowed = {"PROTO", "EMPTY_LIST", "BINPUT", "MARK", "BINFLOAT", "APPENDS", "STOP"}
    assert set(names) <= allowed, names  # nothing that could build or call an object
    return [arg for op, arg, _ in ops if op.name == "BINFLOAT"]


def test_blobs_are_pickled_lists_of_3_and_4_floats():
    t, q = sensor_extrinsics_blobs((1.5, -0.25, 1.9), (0.0, 0.0, 0.0, 1.0))
    assert _float_list(t) == [1.5, -0.25, 1.9]
    assert _float_list(q) == [0.0, 0.0, 0.0, 1.0]
    assert len(bytes(24)) != len(t)  # no longer the 24 zero bytes of before
    # BINFLOAT holds big-endian doubles: the exact values round-trip
    assert struct.pack(">d", 1.9) in t


def test_blobs_are_byte_identical_to_what_pickle_writes():
    t, q = sensor_extrinsics_blobs((1.5, -0.25, 1.9), (0.5, 0.5, 0.5, 0.5))
    assert t == pickle.dumps([1.5, -0.25, 1.9], protocol=2)  # dumps only: nothing is loaded
    assert q == pickle.dumps([0.5, 0.5, 0.5, 0.5], protocol=2)


def test_default_is_the_identity_mount():
    t, q = sensor_extrinsics_blobs()
    assert _float_list(t) == [0.0, 0.0, 0.0]
    assert _float_list(q) == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "translation, rotation",
    [
        ((0.0, 0.0), (1.0, 0.0, 0.0, 0.0)),
        ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0)),
        ((0.0, 0.0, float("nan")), (1.0, 0.0, 0.0, 0.0)),
        ((0.0, 0.0, 0.0), (2.0, 0.0, 0.0, 0.0)),
    ],
)
def test_bad_extrinsics_are_refused(translation, rotation):
    with pytest.raises(ValueError, match="sensor"):
        sensor_extrinsics_blobs(translation, rotation)


def test_synthetic_logs_hold_the_real_format(tiny_synthetic):
    path = tiny_synthetic.log_paths()[0]
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT translation, rotation FROM lidar").fetchall()
    finally:
        con.close()
    assert rows
    for translation, rotation in rows:
        assert len(_float_list(translation)) == 3
        quaternion = _float_list(rotation)
        assert len(quaternion) == 4
        assert abs(sum(v * v for v in quaternion) - 1.0) < 1e-9
