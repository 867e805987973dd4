"""A cache that was damaged or crafted: never kept, never read silently, always a CacheCorruptError.

Covers the resume path (a shard whose bytes do not match its name is rebuilt), the manifest's
checksum and `verify`'s cross-checks against shard footers and metadata counts, non-finite samples,
hostile manifests / footers / blob headers (bounded memory, shard names checked), and whole failure
reasons.
"""

from __future__ import annotations

import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cache_fakes import FakeSource, make_selection

from pluto_dvc.cache import CacheBuildError, CacheCorruptError, CacheDataset, build_cache
from pluto_dvc.cache import describe as describe_build
from pluto_dvc.cache.codec import SampleCodecError, decode_sample
from pluto_dvc.cache.inspect import format_failures, verify_cache
from pluto_dvc.cache.manifest import (
    FAILURES,
    FAILURES_SCHEMA,
    MANIFEST,
    read_manifest,
    write_manifest,
)
from pluto_dvc.cache.shard import END, MAGIC, ShardWriter, read_footer
from pluto_dvc.cache.worker import SHARD_FORMAT
from pluto_dvc.errors import DataError
from pluto_dvc.params import WorkerParams

SEQ = WorkerParams(kind="sequential")


def _build(selection, cache, source=None, *, ratio=0.2):
    return build_cache(
        selection,
        cache,
        source or FakeSource(cost_maps=False),
        samples_per_shard=8,
        max_failure_ratio=ratio,
        worker=SEQ,
    )


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A cache of 3 logs x 7 scenarios (3 shards), never modified by the tests."""
    selection = make_selection(3, 7)
    cache = tmp_path_factory.mktemp("integrity") / "cache"
    _build(selection, cache)
    return cache, selection


@pytest.fixture()
def cache(clean, tmp_path: Path) -> Path:
    return Path(shutil.copytree(clean[0], tmp_path / "cache"))


def _flip(path: Path, offset: int, count: int = 1) -> None:
    data = bytearray(path.read_bytes())
    for i in range(count):
        data[offset + i] ^= 0x40
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------ 1. corrupt shard on resume


def test_a_shard_whose_bytes_do_not_match_its_name_is_rebuilt_not_kept(clean, cache: Path):
    ds = CacheDataset(cache, verify=False)
    shard = Path(ds._paths[int(ds._shard[3])])
    _flip(shard, int(ds._offset[3]) + int(ds._length[3]) // 2)  # mid-blob: footer still valid
    report = _build(clean[1], cache)
    assert report.shards_written == 1 and report.shards_kept == 2
    assert report.corrupt_shards == [shard.name]
    assert shard.name in describe_build(report) and "corrupt" in describe_build(report)
    verify_cache(cache)
    assert _files(cache) == _files(clean[0])  # repaired to the very same bytes


def test_a_corrupt_shard_lends_its_intact_samples_and_recomputes_only_the_bad_one(
    clean, cache: Path, tmp_path: Path
):
    from cache_fakes import read_counter

    ds = CacheDataset(cache, verify=False)
    shard = Path(ds._paths[int(ds._shard[3])])
    _flip(shard, int(ds._offset[3]) + 10)
    counter = tmp_path / "count.txt"
    _build(clean[1], cache, FakeSource(cost_maps=False, counter=str(counter)))
    assert [t for _, t in read_counter(counter)] == [ds.key(3)[1]]
    verify_cache(cache)


# ---------------------------------------------------------------- 2. manifest integrity + verify


def _rewrite_keeping_metadata(cache: Path, change) -> None:
    """What a flipped byte or an edit does: the rows change, the metadata stays as it was."""
    path = cache / MANIFEST
    table = pq.read_table(path)
    new = change(table).replace_schema_metadata(table.schema.metadata)
    pq.write_table(new, path)


def test_changed_manifest_rows_are_refused_by_reader_and_verify(cache: Path):
    def shift_timestamps(t: pa.Table) -> pa.Table:
        ts = t.column("timestamp_us").to_numpy().copy()
        ts[::3] += 1
        return t.set_column(t.schema.get_field_index("timestamp_us"), "timestamp_us", pa.array(ts))

    _rewrite_keeping_metadata(cache, shift_timestamps)
    for check in (read_manifest, CacheDataset, verify_cache):
        with pytest.raises(CacheCorruptError, match=r"manifest\.parquet.*checksum"):
            check(cache)


def test_a_dropped_manifest_row_is_refused(cache: Path):
    _rewrite_keeping_metadata(cache, lambda t: t.slice(0, t.num_rows - 1))
    with pytest.raises(CacheCorruptError, match=r"manifest\.parquet"):
        verify_cache(cache)
    with pytest.raises(CacheCorruptError, match=r"manifest\.parquet"):
        CacheDataset(cache)


def test_verify_cross_checks_rows_with_shard_footers_and_metadata_counts(clean, cache: Path):
    """Even a manifest re-signed after an edit is caught: rows vs footers, counts vs metadata."""
    m = read_manifest(cache)
    write_manifest(cache, m.table.slice(0, m.table.num_rows - 1), m.meta)
    with pytest.raises(CacheCorruptError) as info:
        verify_cache(cache)
    text = str(info.value)
    assert "footer" in text and "num_samples" in text

    shutil.copy(clean[0] / MANIFEST, cache / MANIFEST)
    m = read_manifest(cache)
    swapped = m.table.to_pandas()
    swapped.loc[[0, 1], "crc32"] = swapped.loc[[1, 0], "crc32"].to_numpy()
    write_manifest(cache, pa.Table.from_pandas(swapped, preserve_index=False), m.meta)
    with pytest.raises(CacheCorruptError, match="footer"):
        verify_cache(cache)


def test_flipped_bytes_in_the_manifest_never_change_what_is_read(clean, cache: Path):
    path = cache / MANIFEST
    original = read_manifest(clean[0])
    size = path.stat().st_size
    for offset in range(8, size - 16, max(1, size // 40)):
        shutil.copy(clean[0] / MANIFEST, path)
        _flip(path, offset, 8)
        try:
            m = read_manifest(cache)
        except DataError:
            continue
        assert m.table.equals(original.table) and m.meta == original.meta, offset


# ---------------------------------------------------------------------- 3. no NaN into the cache


def test_a_non_finite_sample_is_refused_before_it_is_written(tmp_path: Path):
    selection = make_selection(2, 6)
    bad = frozenset(selection.token[[1, 7]])
    report = _build(selection, tmp_path / "cache", FakeSource(cost_maps=False, nonfinite=bad))
    assert report.summary["num_samples"] == 10 and report.summary["failures_by_kind"] == {
        "invalid": 2
    }
    failures = pq.read_table(tmp_path / "cache" / FAILURES).to_pylist()
    assert {f["token"] for f in failures} == bad
    for f in failures:
        assert "non-finite" in f["reason"] and "agent.position" in f["reason"]
        assert "reference_line.future_projection" in f["reason"]
    ds = CacheDataset(tmp_path / "cache")
    for i in range(len(ds)):
        for key, a in ds[i].items():
            assert a.dtype.kind != "f" or np.isfinite(a).all(), key


# ------------------------------------------------------------------------- 4. crafted caches


def _resign(cache: Path, table: pa.Table | None = None, **meta_changes) -> None:
    """Rewrite the manifest with a valid checksum (a hostile cache can always do that)."""
    m = read_manifest(cache)
    write_manifest(cache, m.table if table is None else table, {**m.meta, **meta_changes})


def _with_column(table: pa.Table, name: str, index: int, value: int) -> pa.Table:
    values = table.column(name).to_numpy().copy()
    values[index] = value
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values))


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [("length", 1 << 40, "length"), ("length", -5, "length"), ("offset", -1, "offset")],
)
def test_crafted_offsets_and_lengths_are_corrupt_not_memory_errors(
    cache: Path, column: str, value: int, words: str
):
    m = read_manifest(cache)
    _resign(cache, _with_column(m.table, column, 2, value))
    shard_name = m.shards[int(m.table.column("shard")[2].as_py())]["name"]
    with pytest.raises(CacheCorruptError, match=words) as info:
        CacheDataset(cache, verify=False)[2]
    assert shard_name in str(info.value) or MANIFEST in str(info.value)
    with pytest.raises(CacheCorruptError):
        verify_cache(cache)


def test_a_shard_index_out_of_range_is_corrupt(cache: Path):
    m = read_manifest(cache)
    _resign(cache, _with_column(m.table, "shard", 0, 7))
    with pytest.raises(CacheCorruptError, match="shard"):
        CacheDataset(cache)


@pytest.mark.parametrize(
    "name", ["../../../../etc/hostname", "/etc/hostname", "a" * 64 + ".shard/../x"]
)
def test_shard_names_must_be_content_addressed(cache: Path, name: str):
    m = read_manifest(cache)
    shards = [dict(s) for s in m.shards]
    shards[0]["name"] = name
    _resign(cache, shards=shards)
    for check in (read_manifest, CacheDataset, verify_cache):
        with pytest.raises(CacheCorruptError, match=re.escape(name)):
            check(cache)


def _craft_shard(directory: Path, footer: dict, blobs: tuple[bytes, ...] = ()) -> Path:
    with ShardWriter(directory, "craft") as w:
        for blob in blobs:
            w.add(blob)
        return w.finish(footer)


def test_a_footer_without_samples_is_corrupt_in_verify_and_ignored_by_the_build(clean, cache: Path):
    m = read_manifest(cache)
    fingerprint = m.meta["fingerprint"]
    crafted = _craft_shard(
        cache / "shards", {"format": SHARD_FORMAT, "fingerprint": fingerprint, "spec": "x"}
    )
    shards = [dict(s) for s in m.shards]
    name = shards[0]["name"]
    (cache / "shards" / name).unlink()
    crafted.rename(cache / "shards" / name)  # a footer without samples under a good name
    with pytest.raises(CacheCorruptError, match=re.escape(name)):
        verify_cache(cache)
    _build(clean[1], cache)  # no KeyError: the shard is rebuilt
    verify_cache(cache)
    assert _files(cache) == _files(clean[0])


DEEP = b"[" * 100_000 + b"]" * 100_000


def test_deeply_nested_json_is_corrupt_not_a_recursion_error(cache: Path):
    with pytest.raises(SampleCodecError):
        decode_sample(struct.pack("<I", len(DEEP)) + DEEP)
    path = cache / "shards" / "deep.shard"  # a deep footer with a consistent trailer
    trailer = struct.pack("<QII8s", len(MAGIC), len(DEEP), zlib.crc32(DEEP), END)
    path.write_bytes(MAGIC + DEEP + trailer)
    with pytest.raises(CacheCorruptError, match="deep.shard"):
        read_footer(path)


def test_a_crafted_blob_with_a_good_crc_is_corrupt_naming_the_shard(cache: Path):
    blob = struct.pack("<I", len(DEEP)) + DEEP
    shard = _craft_shard(cache / "shards", {}, (blob,))
    m = read_manifest(cache)
    table = m.table.slice(0, 1)
    for column, value in (("length", len(blob)), ("offset", len(MAGIC)), ("shard", 0)):
        table = _with_column(table, column, 0, value)
    crc = pa.array([zlib.crc32(blob)], pa.uint32())
    table = table.set_column(table.schema.get_field_index("crc32"), "crc32", crc)
    shards = [
        {"name": shard.name, "sha256": shard.stem, "bytes": shard.stat().st_size, "samples": 1}
        | {"failures": 0}
    ]
    _resign(cache, table, shards=shards, num_samples=1, num_scenarios=1, num_failures=0)
    with pytest.raises(CacheCorruptError, match=re.escape(shard.name)):
        CacheDataset(cache)[0]


# ------------------------------------------------------------------- 6. whole failure reasons


def test_failure_reasons_are_shown_whole_and_grouped(tmp_path: Path):
    selection = make_selection(2, 5)
    long_dir = "/".join(["a-rather-long-folder-name-of-a-real-dataset"] * 6)
    selection["log_path"] = [f"{long_dir}/{n}.db" for n in selection.log_name]
    bad_log = sorted(selection.log_name.unique())[0]
    with pytest.raises(CacheBuildError) as info:
        _build(selection, tmp_path / "cache", FakeSource(bad_logs=frozenset({bad_log})), ratio=0.1)
    message = str(info.value)
    reason = f"log {bad_log} could not be opened: {long_dir}/{bad_log}.db is not a SQLite database"
    assert f"5 x {reason} (simulated)" in message
    text = format_failures(tmp_path / "cache")
    assert f"{reason} (simulated)" in text and re.search(r"\b5\b.*" + re.escape(reason), text)


def test_inspect_failures_groups_identical_reasons_with_counts(tmp_path: Path):
    cache = tmp_path / "cache"
    cache.mkdir()
    reason = "x" * 300 + " missing columns ['ego_pose.vx']"
    rows = [
        {"log_name": f"log{i % 3}", "token": f"{i:016x}", "scenario_type": "t", "map_name": "m"}
        | {"kind": "log", "reason": reason if i % 2 else "other"}
        for i in range(10)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=FAILURES_SCHEMA), cache / FAILURES)
    text = format_failures(cache, limit=3)
    assert re.search(r"\b5 +log +" + re.escape(reason) + "$", text, re.M)
    assert re.search(r"\b5 +log +other$", text, re.M)
