"""Benchmark readers and the program-dataset format.

  from pad_jax import data
  examples = data.load("gsm8k", "test")          # list[data.Example]
  records = data.read_programs("programs.jsonl")  # list[data.ProgramRecord]

`python -m pad_jax.data stats` prints the size of every benchmark split.
"""

from pad_jax.data.benchmarks import BENCHMARKS
from pad_jax.data.benchmarks import data_file
from pad_jax.data.benchmarks import default_data_dir
from pad_jax.data.benchmarks import Example
from pad_jax.data.benchmarks import load
from pad_jax.data.benchmarks import stats
from pad_jax.errors import DataError
from pad_jax.data.programs import check_program
from pad_jax.data.programs import ProgramRecord
from pad_jax.data.programs import ProgramWriter
from pad_jax.data.programs import read_programs
from pad_jax.data.programs import write_programs
