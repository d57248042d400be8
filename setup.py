"""ivid-jax: 3D-aware image generation with 2D diffusion models (IVID) in JAX/Flax."""

import re

import setuptools

# One constant, in the package (ivid_jax.REPOSITORY_URL); read without importing the package.
_URL = re.search(r"REPOSITORY_URL = '([^']+)'",
                 open('ivid_jax/__init__.py', encoding='utf-8').read()).group(1)

# Each bound is the range CI runs (lower: the versions it installs; upper: the
# next minor release, which may break APIs this fast-moving stack changes).
INSTALL_REQUIRES = [
    'jax>=0.10.2,<0.11',
    'flax>=0.12.8,<0.13',
    'optax>=0.2.8,<0.3',
    'orbax-checkpoint>=0.12.8,<0.13',
    'tensorflow-datasets>=4.9.10,<4.10',
    'ml-collections>=1.1.0,<1.2',
    'clu>=0.0.12,<0.0.13',
    'einops>=0.8.2,<0.9',
    'numpy>=2.4,<2.5',
    'absl-py>=2.5,<3',  # flags and logging of the `ivid-jax` command (ml-collections needs it)
    # TFDS decodes images with PIL when TensorFlow is absent; also writes the demo's PNG/GIF.
    'pillow>=13.0,<14',
    # TFDS's download_and_prepare imports it (through etils) but does not depend on it.
    'importlib_resources>=7.1,<8',
    'tqdm>=4.67,<5',  # progress bars (TFDS already depends on it)
    # The input pipeline: deterministic, shardable, checkpointable, TF-free reading of
    # tfds.data_source (array_record).
    'grain>=0.2.18,<0.3',
]

setuptools.setup(
    name='ivid-jax',
    version='0.1.0',
    description=__doc__,
    url=_URL,
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=setuptools.find_packages(include=['ivid_jax', 'ivid_jax.*']) + [
        'ivid_jax.configs', 'ivid_jax.bundled_data'],
    # The top-level configs/ and data/ folders install inside the package, so
    # an installed `ivid-jax` finds its default config and bundled images.
    package_dir={'ivid_jax.configs': 'configs', 'ivid_jax.bundled_data': 'data'},
    # models/: the demo's shipped synthetic networks (ivid-jax demo).
    # geometry/*.cc: the rasteriser's CPU kernel, compiled at first use (raster_kernel.py).
    package_data={'ivid_jax.bundled_data': ['*.npz', '*.md', 'models/*.msgpack'],
                  'ivid_jax.geometry': ['*.cc']},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # pytest (xdist: the suite is mostly XLA compilation, so one worker per core runs it
        # about 1.4x faster on 2 cores), nbclient + a kernel (and mediapy) to execute the
        # Colab notebooks, OpenCV for the TSED/Telea tests, and an ffmpeg for the MP4 writer's
        # test.
        'test': ['pytest>=9.2,<10', 'pytest-xdist>=3.8,<4', 'nbclient>=0.11,<0.12',
                 'nbformat>=5.11,<6',
                 'ipykernel>=7.4,<8', 'opencv-python-headless>=5.0,<5.1',
                 'imageio-ffmpeg>=0.8.1,<0.9', 'mediapy>=1.2.7,<1.3',
                 # CI exercises clu's real TensorBoard writers (the trainer falls back to its own
                 # writer without them; tests cover both).
                 'tensorflow-cpu>=2.21,<2.22', 'tensorboard>=2.21,<2.22'],
        # colab/quickstart.ipynb shows the free-view videos inline with mediapy (it brings
        # matplotlib, which plots the metrics); the test suite executes the notebook.
        'colab': ['mediapy>=1.2.7,<1.3'],
        # MP4 videos from `ivid-jax render`: an ffmpeg binary in a wheel (165 MB, so optional;
        # without it render writes GIFs, or uses an ffmpeg found on the PATH).
        'video': ['imageio-ffmpeg>=0.8.1,<0.9'],
        # `ivid-jax eval-3d`'s TSED (SIFT matching) and the Telea inpainting baseline of the
        # ground-truth scores: OpenCV's, the implementations those metrics are defined by.
        # Optional: FID/KID/IS, reprojection and flatness are pure JAX/numpy.
        'eval': ['opencv-python-headless>=5.0,<5.1'],
        # clu's metric writers and periodic actions import TensorFlow; tensorflow-cpu 2.21 no
        # longer pulls tensorboard in. Without this extra the trainer writes metrics.jsonl + PNGs.
        'tensorboard': ['tensorflow-cpu>=2.21,<2.22', 'tensorboard>=2.21,<2.22'],
        # `ivid-jax estimate-depth --model=<hub id or folder>`: transformers' depth models
        # (MiDaS DPT-BEiT, Depth Anything) run with torch. Not installed by CI: tests use the
        # built-in tiny-random backend.
        'depth': ['transformers>=4.45,<6', 'torch>=2.4'],
    },
    entry_points={'console_scripts': ['ivid-jax=ivid_jax.main:run']},
)
