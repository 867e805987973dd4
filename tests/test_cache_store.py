"""The cache's storage layer: sample codec, shard files, manifest, random-access reader, verify."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import lz4.block
import numpy as np
import pytest

from pluto_dvc.cache import CacheCorruptError, CacheDataset, build_cache, inspect_cache
from pluto_dvc.cache.codec import SampleCodecError, decode_batch, decode_sample, encode_sample
from pluto_dvc.cache.inspect import format_inspection, verify_cache
from pluto_dvc.cache.manifest import read_manifest, write_manifest
from pluto_dvc.cache.shard import ShardWriter, read_footer, verify_shard
from pluto_dvc.cli import main
from pluto_dvc.errors import DataError
from pluto_dvc.features import collate
from pluto_dvc.params import WorkerParams
from pluto_dvc.testing.cache_fakes import FakeSource, fake_sample, make_selection

SRC = Path(__file__).resolve().parents[1] / "src"
SEQ = WorkerParams(kind="sequential")


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k])
        for k in a
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """A small cache: 3 logs x 7 scenarios, 8 per shard, no failures."""
    cache = tmp_path_factory.mktemp("store") / "cache"
    selection = make_selection(3, 7)
    build_cache(
        selection, cache, FakeSource(), samples_per_shard=8, max_failure_ratio=0.0, worker=SEQ
    )
    return cache, selection


def test_codec_round_trip_keeps_keys_dtypes_shapes_and_values():
    sample = fake_sample("log", "00000000000000aa")
    sample["scalar"] = np.asarray(2.5)
    sample["empty"] = np.zeros((0, 3, 2), np.float32)
    sample["names"] = np.array(["lane", "crosswalk"])
    sample["big_endian"] = np.arange(5, dtype=">i4")
    out = decode_sample(encode_sample(sample))
    assert out["scalar"].shape == () and out["empty"].shape == (0, 3, 2)
    assert out["big_endian"].dtype == np.dtype("<i4")
    sample["big_endian"] = sample["big_endian"].astype("<i4")
    assert _same(sample, out)
    assert out["cost_maps"].dtype == np.float16 and out["cost_maps"].shape == (600, 600, 1)
    assert all(a.flags.writeable and a.flags.c_contiguous for a in out.values())
    # deterministic bytes, independent of dict order
    assert encode_sample(dict(reversed(list(sample.items())))) == encode_sample(sample)


def _blob(schema: bytes, dims: list[int], packed: bytes) -> bytes:
    return len(schema).to_bytes(4, "little") + schema + np.asarray(dims, "<u4").tobytes() + packed


def test_codec_refuses_objects_and_garbage():
    with pytest.raises(SampleCodecError, match="not storable"):
        encode_sample({"x": np.array([{"a": 1}], dtype=object)})
    eight = lz4.block.compress(bytes(8), store_size=False)
    with pytest.raises(SampleCodecError, match="not storable"):  # a forged object array
        decode_sample(_blob(b'[["x","|O",1]]', [1], eight))
    assert decode_sample(_blob(b'[["x","<f8",1]]', [1], eight))["x"].tolist() == [0.0]
    with pytest.raises(SampleCodecError, match="malformed"):
        decode_sample(b"not a blob at all")
    with pytest.raises(SampleCodecError, match="limit"):  # a header announcing 16 GiB
        decode_sample(_blob(b'[["x","<f8",2]]', [1 << 16, 1 << 15], eight))
    blob = encode_sample({"x": np.arange(1000)})
    for broken in (blob[:-3], blob[:20], blob[:-1]):  # (flipped bytes: the CRC-32 catches them)
        with pytest.raises(SampleCodecError):
            decode_sample(broken)
    sixteen = lz4.block.compress(bytes(16), store_size=False)
    with pytest.raises(SampleCodecError, match="corrupt"):  # more data than the header describes
        decode_sample(_blob(b'[["x","<f8",1]]', [1], sixteen))
    with pytest.raises(SampleCodecError, match="inflates to 8 bytes"):  # less
        decode_sample(_blob(b'[["x","<f8",1]]', [2], eight))


def test_decode_batch_equals_collate_of_decoded_samples():
    samples = [fake_sample("log", f"{i:016x}") for i in range(5)]
    for sample in samples:  # odd-width items (str, 2-byte) and scalars ride along
        sample["names"] = np.array(["lane", "crosswalk", f"{sample['agent.category'].size:9d}"])
        sample["scalar"] = np.asarray(sample["agent.category"].size, np.int16)
    for i, sample in enumerate(samples):  # big enough to be decoded straight into the batch
        sample["wide"] = np.full((i % 3 + 1, 70_000), i + 0.5, np.float32)
    samples[2]["static_objects.position"] = np.zeros((0, 2), np.float32)
    blobs = [encode_sample(s) for s in samples]
    expected = collate(samples)
    batch = decode_batch(blobs)
    assert _same(batch, expected)
    # padded rows are zero / False, whatever earlier batches left in the scratch buffers
    decode_batch(blobs[::-1])
    assert _same(decode_batch(blobs[:2]), collate(samples[:2]))
    assert all(a.flags.writeable and a.flags.c_contiguous for a in batch.values())
    with pytest.raises(ValueError, match="at least one"):
        decode_batch([])
    wider = dict(samples[1], names=np.array(["a much longer name"]))  # dtype <U18: numpy promotes
    assert _same(decode_batch([blobs[0], encode_sample(wider)]), collate([samples[0], wider]))
    other = dict(samples[0])
    del other["cost_maps"]
    with pytest.raises(ValueError, match="different keys"):
        decode_batch([blobs[0], encode_sample(other)])
    other = dict(samples[0], **{"agent.position": np.zeros((3, 7, 2), np.float32)})
    with pytest.raises(ValueError, match="beyond the first axis"):
        decode_batch([blobs[0], encode_sample(other)])


def test_decoded_arrays_do_not_share_memory_between_samples():
    blobs = [encode_sample(fake_sample("log", f"{i:016x}")) for i in range(2)]
    first = decode_sample(blobs[0])
    snapshot = {k: a.copy() for k, a in first.items()}
    decode_sample(blobs[1])  # reuses the scratch buffers
    assert _same(first, snapshot)


def _torch_load_calls(text: str) -> list[str]:
    """The argument text of every ``torch.load(...)`` call in ``text``."""
    calls = []
    for match in re.finditer(r"torch\.load\(", text):
        depth, i = 1, match.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        calls.append(text[match.end() : i - 1])
    return calls


def test_no_pickle_in_the_product():
    """No module of the package may import pickle-like loaders, allow pickled numpy files, or
    call ``torch.load`` without ``weights_only=True``."""
    bad = re.compile(
        r"^\s*(import|from)\s+(pickle|cPickle|marshal|joblib|dill|cloudpickle|shelve)\b"
        r"|allow_pickle\s*=\s*True",
        re.MULTILINE,
    )
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if bad.search(p.read_text())]
    assert offenders == []
    unsafe = [
        f"{p.relative_to(SRC)}: torch.load({args})"
        for p in SRC.rglob("*.py")
        for args in _torch_load_calls(p.read_text())
        if not re.search(r"\bweights_only\s*=\s*True\b", args)
    ]
    assert unsafe == []
    assert _torch_load_calls("torch.load(f(x), weights_only=False)") == ["f(x), weights_only=False"]


def test_shard_writer_names_the_file_by_its_sha256_and_cleans_up(tmp_path: Path):
    with ShardWriter(tmp_path, "a") as w:
        first = w.add(b"hello")
        second = w.add(b"world!")
        path = w.finish({"samples": 2})
    assert first == (8, 5, zlib.crc32(b"hello")) and second[:2] == (13, 6)
    verify_shard(path)
    assert read_footer(path) == {"samples": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, "b") as w:
        w.add(b"partial")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp left


def test_dataset_reads_every_sample_by_manifest_row(built):
    cache, selection = built
    ds = CacheDataset(cache)
    assert len(ds) == len(selection) == 21
    for i in range(len(ds)):
        log_name, token, _ = ds.key(i)
        assert _same(ds[i], fake_sample(log_name, token))
    rows = ds.table.to_pandas()
    assert list(rows.columns[:5]) == [
        "log_name",
        "token",
        "scenario_type",
        "map_name",
        "timestamp_us",
    ]
    # sorted by (map, log, token); every selected scenario exactly once
    assert rows[["log_name", "token"]].apply(tuple, axis=1).is_monotonic_increasing
    assert set(rows.token) == set(selection.token)
    one_log = selection.log_name.iloc[0]
    sub = CacheDataset(cache, log_names=[one_log])
    assert len(sub) == 7 and set(sub.table.column("log_name").to_pylist()) == {one_log}
    assert _same(sub[3], fake_sample(one_log, sub.key(3)[1]))
    with pytest.raises(IndexError):
        ds[len(ds)]
    picked = [20, 3, 3, 11]  # any order, repeats allowed: what a shuffled sampler asks for
    assert _same(ds.batch(picked), collate([ds[i] for i in picked]))


def test_cache_of_another_codec_is_refused_with_a_rebuild_hint(built, tmp_path: Path):
    cache = _copy(built[0], tmp_path / "cache")
    m = read_manifest(cache)
    write_manifest(cache, m.table, dict(m.meta, codec="zstd1-grouped-shuffle-json/1"))
    with pytest.raises(DataError, match=r"codec 'zstd1-grouped-shuffle-json/1'.*dvc repro"):
        CacheDataset(cache)


def test_manifest_records_shards_with_checksums(built):
    cache, _ = built
    m = read_manifest(cache)
    files = sorted(p.name for p in (cache / "shards").iterdir())
    assert sorted(s["name"] for s in m.shards) == files
    assert sum(s["samples"] for s in m.shards) == m.table.num_rows
    for s in m.shards:
        assert s["name"] == f"{s['sha256']}.shard"
        assert (cache / "shards" / s["name"]).stat().st_size == s["bytes"]
    assert m.meta["checksum"] == "sha256" and m.meta["source"]["version"] == "fake-1"
    assert sorted(p.name for p in cache.iterdir()) == [
        "failures.parquet",
        "manifest.parquet",
        "shards",
    ]


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_flipped_byte_is_detected_and_names_the_shard(built, tmp_path: Path, capsys):
    cache = _copy(built[0], tmp_path / "cache")
    verify_cache(cache)
    ds = CacheDataset(cache)
    m = read_manifest(cache)
    shard = m.shard_path(int(ds._shard[0]))
    _flip(shard, int(ds._offset[0]) + 100)
    with pytest.raises(CacheCorruptError, match=re.escape(shard.name)):
        verify_cache(cache)
    with pytest.raises(CacheCorruptError, match=re.escape(shard.name)):
        CacheDataset(cache)[0]  # first open of the shard: SHA-256 check
    assert main(["cache", "verify", "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err
    assert shard.name in err and "SHA-256" in err and "CRC-32" in err


def test_every_read_checks_the_sample_crc(built, tmp_path: Path):
    cache = _copy(built[0], tmp_path / "cache")
    ds = CacheDataset(cache)
    ds[0]  # shard verified and opened
    same_shard = [i for i in range(1, len(ds)) if ds._shard[i] == ds._shard[0]]
    j = same_shard[-1]
    shard = Path(ds._paths[int(ds._shard[j])])
    _flip(shard, int(ds._offset[j]) + 7)
    assert _same(ds[0], ds[0])  # the untouched sample still reads
    with pytest.raises(CacheCorruptError, match=rf"{shard.name} is corrupt: .* fails its CRC-32"):
        ds[j]


def test_inspect_shows_counts_and_one_sample(built, capsys):
    cache, _ = built
    info = inspect_cache(cache, index=2)
    assert info["num_samples"] == 21 and info["num_failures"] == 0 and info["num_shards"] == 3
    assert sum(info["samples_per_type"].values()) == 21
    arrays = info["sample"]["arrays"]
    assert arrays["cost_maps"] == {
        **arrays["cost_maps"],
        "shape": [600, 600, 1],
        "dtype": "float16",
    }
    text = format_inspection(info)
    assert "KiB per sample" in text and "cost_maps" in text
    assert main(["cache", "inspect", "--cache-dir", str(cache), "--index", "1"]) == 0
    assert "agent.position" in capsys.readouterr().out
    assert main(["cache", "inspect", "--cache-dir", str(cache), "--token", "ffffffffffffffff"]) == 2
    assert main(["cache", "verify", "--cache-dir", str(cache)]) == 0
    assert "every SHA-256 and CRC-32 matches" in capsys.readouterr().out
