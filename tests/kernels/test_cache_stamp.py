"""numba's cached kernels are dropped when any kernel source changes, not only their own file."""

from __future__ import annotations

from pathlib import Path

from flight.jitcache import STAMP, drop_stale_kernels, kernel_sources_digest


def _cache_files(cache: Path) -> list[str]:
    names = ["conv.conv2d-10.py311.nbi", "conv.conv2d-10.py311.1.nbc", "gemm._macro-5.py311.nbi"]
    for name in names:
        (cache / name).write_bytes(b"compiled")
    return names


def test_an_edit_to_another_kernel_file_drops_every_cached_kernel(tmp_path):
    package, cache = tmp_path / "kernels", tmp_path / "cache"
    package.mkdir()
    cache.mkdir()
    (package / "conv.py").write_text("from ._ukernel import MR\n")
    (package / "_ukernel.py").write_text("MR = 5\n")
    _cache_files(cache)
    # no stamp yet (a cache from before the stamp existed): dropped, stamp written
    assert drop_stale_kernels(package, cache)
    assert not list(cache.glob("*.nb*"))
    assert (cache / STAMP).read_text() == kernel_sources_digest(package)
    # unchanged sources: the cache is kept
    names = _cache_files(cache)
    assert not drop_stale_kernels(package, cache)
    assert sorted(p.name for p in cache.glob("*.nb*")) == sorted(names)
    # the tile changes in _ukernel.py only: conv.py's cached code is stale too
    (package / "_ukernel.py").write_text("MR = 8\n")
    assert drop_stale_kernels(package, cache)
    assert not list(cache.glob("*.nb*"))
    assert not drop_stale_kernels(package, cache)


def test_the_real_kernel_cache_carries_the_current_stamp():
    import flight.kernels as kernels

    cache = Path(kernels._act.bias_act_rows._cache._cache_path)
    package = Path(kernels.__file__).resolve().parent
    assert (cache / STAMP).read_text() == kernel_sources_digest(package)
