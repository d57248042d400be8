"""ivid-jax: 3D-aware image generation with 2D diffusion models (IVID) in JAX/Flax."""

import re

import setuptools

# One constant, in the package (ivid_jax.REPOSITORY_URL); read without importing the package.
_URL = re.search(r"REPOSITORY_URL = '([^']+)'",
                 open('ivid_jax/__init__.py', encoding='utf-8').read()).group(1)

# Lower bounds: the versions the whole test suite passes with (the development venv,
# Python 3.11; older releases are untested, not known to fail). No upper bounds: none of
# these has a known break. When a release breaks something, cap it here with the reason
# beside the bound. einops is not a dependency: the only reshapes are the UNet attention's
# four lines, where jnp.einsum already names the axes, and the image grids need padding,
# which einops cannot express.
INSTALL_REQUIRES = [
    'jax>=0.10.2',
    'flax>=0.12.8',
    'optax>=0.2.8',
    'orbax-checkpoint>=0.12.8',
    'tensorflow-datasets>=4.9.10',
    'ml-collections>=1.1.0',
    'clu>=0.0.12',
    'numpy>=2.4.6',
    'absl-py>=2.5.1',  # flags and logging of the `ivid-jax` command (ml-collections needs it)
    # TFDS decodes images with PIL when TensorFlow is absent; also writes the demo's PNG/GIF.
    'pillow>=13.0.0',
    # TFDS's download_and_prepare imports it (through etils) but does not depend on it.
    'importlib_resources>=7.1.0',
    'tqdm>=4.70.1',  # progress bars (TFDS already depends on it)
    # The input pipeline: deterministic, shardable, checkpointable, TF-free reading of
    # tfds.data_source (array_record).
    'grain>=0.2.18',
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
        'test': ['pytest>=9.2.0', 'pytest-xdist>=3.8.0', 'nbclient>=0.11.0',
                 'nbformat>=5.11.1',
                 'ipykernel>=7.4.0', 'opencv-python-headless>=5.0.0',
                 'imageio-ffmpeg>=0.8.1', 'mediapy>=1.2.7',
                 # CI exercises clu's real TensorBoard writers (the trainer falls back to its own
                 # writer without them; tests cover both).
                 'tensorflow-cpu>=2.21.0', 'tensorboard>=2.21.0'],
        # colab/quickstart.ipynb shows the free-view videos inline with mediapy (it brings
        # matplotlib, which plots the metrics); the test suite executes the notebook.
        'colab': ['mediapy>=1.2.7'],
        # MP4 videos from `ivid-jax render`: an ffmpeg binary in a wheel (165 MB, so optional;
        # without it render writes GIFs, or uses an ffmpeg found on the PATH).
        'video': ['imageio-ffmpeg>=0.8.1'],
        # `ivid-jax eval-3d`'s TSED (SIFT matching) and the Telea inpainting baseline of the
        # ground-truth scores: OpenCV's, the implementations those metrics are defined by.
        # Optional: FID/KID/IS, reprojection and flatness are pure JAX/numpy.
        'eval': ['opencv-python-headless>=5.0.0'],
        # clu's metric writers and periodic actions import TensorFlow; tensorflow-cpu 2.21 no
        # longer pulls tensorboard in. Without this extra the trainer writes metrics.jsonl + PNGs.
        'tensorboard': ['tensorflow-cpu>=2.21.0', 'tensorboard>=2.21.0'],
        # `ivid-jax estimate-depth --model=<hub id or folder>`: transformers' depth models
        # (MiDaS DPT-BEiT, Depth Anything) run with torch. Not installed by CI: tests use the
        # built-in tiny-random backend, so these lower bounds are the oldest releases with the
        # depth models' classes, not tested ones.
        'depth': ['transformers>=4.45', 'torch>=2.4'],
    },
    entry_points={'console_scripts': ['ivid-jax=ivid_jax.main:run']},
)
