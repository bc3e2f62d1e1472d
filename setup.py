"""Builds fastcodec's Cython extensions; everything else is in pyproject.toml.

Each `fastcodec/_<name>_c.pyx` becomes the extension `fastcodec._<name>_c`.
`FASTCODEC_NO_EXTENSIONS=1` gives a pure-Python build. A compile error fails
the build: a silently missing extension would ship a slow gateway.
"""

import os
from pathlib import Path

from setuptools import Extension, setup


def fastcodec_extensions() -> list[Extension]:
    if os.environ.get("FASTCODEC_NO_EXTENSIONS"):
        return []
    from Cython.Build import cythonize

    sources = sorted(Path("fastcodec").glob("_*_c.pyx"))
    extensions = [
        Extension(f"fastcodec.{source.stem}", [str(source)], extra_compile_args=["-O2"])
        for source in sources
    ]
    return cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            # Bounds checks stay on by default: decoders face hostile bytes.
            # A module turns them off per function where its own length
            # checks make them redundant.
            "embedsignature": True,
        },
    )


setup(ext_modules=fastcodec_extensions())
