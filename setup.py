"""cffi_modules cannot be declared in pyproject.toml (cffi issue #55); metadata lives there."""

from setuptools import setup

setup(
    cffi_modules=["native/build_native.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
