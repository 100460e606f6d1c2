"""Packaging for pad-jax: Program-aided Distillation on JAX/t5x.

t5x (and its airio / jestimator needs) are GitHub-only and are installed by
`make setup` from a wheel directory, or from GitHub (see README; on
accelerator hosts `make setup-tpu` / `make setup-gpu`, docs/tpu_vm.md).
"""
import setuptools

INSTALL_REQUIRES = [
    "jax[cpu]==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "seqio==0.0.20",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "gin-config==0.5.0",
    "clu==0.0.12",
    "absl-py",
    "openai",
    "tokenizers",
    "safetensors",  # Hugging Face checkpoints in and out (convert_hf, export_hf)
    "tensorboard",
    "tqdm",
    "matplotlib",
    "numpy",
    # What t5x / airio / jestimator import (they are installed --no-deps).
    "grain",
    "chex",
    "fiddle",
    "jaxtyping",
    "cached_property",
]

EXTRAS = {
    # Accelerator hosts: `make setup-tpu` / `make setup-gpu`, docs/tpu_vm.md.
    # No test dependencies (torch, transformers) on workers.
    # jax 0.10.2's `tpu` extra pins libtpu 0.0.42.* (on the registry: no -f index).
    "tpu": ["jax[tpu]==0.10.2"],
    # CUDA 12 wheels from pip (jax-cuda12-plugin[with-cuda]); CUDA 13:
    # swap in "jax[cuda13]==0.10.2" (docs/tpu_vm.md, "GPUs").
    "gpu": ["jax[cuda12]==0.10.2"],
    # Apache Beam: verification on Beam (`python -m pad_jax.verify --runner=...`) and
    # seqio's cache_tasks_main (docs/scaling.md). Its pins clash with the stack:
    # apache-beam 2.77 wants protobuf<7, while TensorFlow 2.21's and
    # sentencepiece's generated code needs the protobuf 7 runtime (import fails
    # on 6.x). Beam runs on protobuf 7, so install it as `make setup` does:
    #   pip install -e '.[beam]' && pip install --no-deps 'protobuf>=7.36.1,<8'
    "beam": ["apache-beam[tfrecord]==2.77.0"],
    "test": [
        "pytest",
        "pytest-timeout",
        "pytest-xdist",
        "transformers",
        "safetensors",
        "torch==2.13.0",
    ],
}

setuptools.setup(
    name="pad-jax",
    version="0.1.0",
    description="Program-aided Distillation (PaD) of math reasoning into small T5 students, on JAX/t5x.",
    packages=setuptools.find_packages(include=["pad_jax", "pad_jax.*", "tasks", "tasks.*"]),
    # The CPU decoding kernels ship as C++ sources, compiled on first use; a
    # C++17 compiler (`c++` or $CXX) is optional: without one, decoding runs
    # the jnp code (same ids, slower on CPU; docs/student.md).
    package_data={"pad_jax": ["data/demo_vocab/*", "student/kernels/*.cc",
                             "student/kernels/*.h"]},
    python_requires=">=3.11,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    license="Apache-2.0",
)
