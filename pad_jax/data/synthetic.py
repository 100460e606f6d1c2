"""Seeded templated arithmetic word problems with gold `solution()` programs.

The problems are what the offline demo and the trainer tests learn on: a tiny
student trained from scratch has to reach high held-out execution accuracy
on them within minutes of CPU training, which proves that the whole loop
(data -> t5x training -> decoding -> execution -> scoring) learns.

Each template is a one- to four-step problem (add, subtract, multiply,
divide, rates, percentages). A gold program is written in the project's
program style::

    def solution():
        \"\"\"How many apples does Mia have now?\"\"\"
        start_count = 24
        bought = 7
        # add the ones bought
        total = start_count + bought
        result = total
        return result

The docstring restates the question being asked (its last sentence) and the
facts of the question are restated as named variables, in the order in which
the question gives them, so that the program copies every number from the
question. Each computation step is one line preceded by its comment.

Template instance and split disjointness: a *template instance* is the pair
``(template id, tuple of numbers)``. Names and items (the surface words) do
not make a new instance. Every instance is assigned to exactly one split by a
hash of the instance (80% train, 10% validation, 10% test), independent of the
seed, so `generate` for different splits never shares an instance, whatever
seeds are used. Within one `generate` call the instances are distinct until a
template's instance space in that split is used up (only large train sets get
there); after that instances repeat with new names and items.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from pad_jax.data import benchmarks
from pad_jax.errors import ConfigError
from pad_jax.data.programs import ProgramRecord, write_programs

SPLITS = ("train", "validation", "test")
# Share of the instance space (out of 100 hash buckets) for each split.
_SPLIT_BUCKETS = {"test": range(0, 10), "validation": range(10, 20),
                  "train": range(20, 100)}
TEACHER = "synthetic"
# The from-scratch demo student's vocabulary (committed; see
# `train_demo_vocab`): byte-level BPE, every digit its own token.
DEMO_VOCAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "demo_vocab")
DEMO_VOCAB_SIZE = 1024
DEFAULT_SIZES = {"train": 20000, "validation": 200, "test": 200}

NAMES = (("Mia", "she"), ("Tom", "he"), ("Ava", "she"), ("Leo", "he"),
         ("Zoe", "she"), ("Sam", "he"), ("Lily", "she"), ("Max", "he"),
         ("Emma", "she"), ("Ben", "he"), ("Nora", "she"), ("Jack", "he"))
ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books",
         "cards", "shells", "stamps", "balloons")
CONTAINERS = (("box", "boxes"), ("bag", "bags"), ("jar", "jars"),
              ("basket", "baskets"), ("pack", "packs"), ("crate", "crates"))
WORKERS = ("baker", "farmer", "painter", "tailor", "gardener")

# One step: (variable, expression, comment).
Step = Tuple[str, str, str]
NumberSampler = Callable[[random.Random], Tuple[int, ...]]


@dataclasses.dataclass(frozen=True)
class Template:
  """A templated problem.

  Attributes:
    name: stable template id (part of every instance's identity).
    question: format string over {name} (also {Name}), {pronoun},
      {Pronoun} (capitalised, to start a sentence), {item}, {container},
      {containers} (plural), {worker} and the number slots {a}, {b}, ...;
      its last sentence is the question asked.
    givens: variable names bound to the numbers, in question order.
    steps: the computation, one step per line; the last variable is the
      result.
    sample: draws the number tuple (all constraints, e.g. exact division,
      are enforced here).
  """

  name: str
  question: str
  givens: Sequence[str]
  steps: Sequence[Step]
  sample: NumberSampler

  @property
  def num_steps(self) -> int:
    return len(self.steps)


def _r(rng: random.Random, low: int, high: int) -> int:
  return rng.randint(low, high)


def _percent(rng: random.Random) -> int:
  return rng.choice((10, 20, 25, 30, 40, 50, 60, 75, 80, 90))


def _multiple_for_percent(rng: random.Random, percent: int, low: int,
                          high: int) -> int:
  """A number in [low, high] whose `percent`% is a whole number."""
  step = 100 // _gcd(100, percent)
  return step * rng.randint(max(1, -(-low // step)), max(1, high // step))


def _gcd(a: int, b: int) -> int:
  while b:
    a, b = b, a % b
  return a


def _t(name: str, question: str, givens: Sequence[str],
       steps: Sequence[Step], sample: NumberSampler) -> Template:
  return Template(name, question, tuple(givens), tuple(steps), sample)


def _sample_divide(rng):
  b = _r(rng, 2, 20)
  return (b * _r(rng, 2, 99), b)


def _sample_percent_of(rng):
  p = _percent(rng)
  return (_multiple_for_percent(rng, p, 20, 900), p)


def _sample_discount(rng):
  p = _percent(rng)
  return (_multiple_for_percent(rng, p, 20, 900), p)


def _sample_share_then_add(rng):
  b = _r(rng, 2, 9)
  return (b * _r(rng, 2, 20), b, _r(rng, 1, 20))


def _sample_buy_with_budget(rng):
  b, c = _r(rng, 2, 12), _r(rng, 2, 20)
  return (b * c + _r(rng, 1, 200), b, c)


def _sample_percent_left(rng):
  p = _percent(rng)
  a = _multiple_for_percent(rng, p, 20, 400)
  return (a, p, _r(rng, 1, a - a * p // 100 - 1))


def _sample_trip(rng):
  mpg, gallons, price, friends = (_r(rng, 10, 40), _r(rng, 2, 20),
                                  _r(rng, 2, 9), _r(rng, 2, 6))
  food = friends * _r(rng, 2, 30) - gallons * price % friends
  return (mpg * gallons, mpg, price, food, friends)


TEMPLATES: Tuple[Template, ...] = (
    # ---- one step ----
    _t("add", "{Name} has {a} {item}. {Pronoun} buys {b} more. "
       "How many {item} does {name} have now?",
       ["start_count", "bought"],
       [("total", "start_count + bought", "add the ones bought")],
       lambda rng: (_r(rng, 2, 200), _r(rng, 2, 200))),
    _t("subtract", "{Name} had {a} {item} and gave {b} of them to a friend. "
       "How many {item} does {name} have left?",
       ["start_count", "given_away"],
       [("left", "start_count - given_away", "remove the ones given away")],
       lambda rng: (lambda b: (b + _r(rng, 1, 200), b))(_r(rng, 2, 200))),
    _t("multiply", "Each {container} holds {a} {item}. "
       "How many {item} are in {b} {containers}?",
       ["per_container", "containers"],
       [("total", "per_container * containers", "items in all containers")],
       lambda rng: (_r(rng, 2, 99), _r(rng, 2, 30))),
    _t("divide", "{Name} shares {a} {item} equally among {b} friends. "
       "How many {item} does each friend get?",
       ["total", "friends"],
       [("each", "total / friends", "split the items equally")],
       _sample_divide),
    _t("rate_distance", "A train travels at {a} miles per hour. "
       "How many miles does it travel in {b} hours?",
       ["speed", "hours"],
       [("distance", "speed * hours", "distance is speed times time")],
       lambda rng: (_r(rng, 20, 120), _r(rng, 2, 24))),
    _t("percent_of", "A shop has {a} {item}. {b}% of them are sold. "
       "How many {item} are sold?",
       ["total", "percent_sold"],
       [("sold", "total * percent_sold / 100", "take the percentage")],
       _sample_percent_of),
    # ---- two steps ----
    _t("packs_give", "{Name} buys {a} {containers} of {item} with {b} {item} "
       "in each. {Pronoun} gives away {c} {item}. "
       "How many {item} does {name} have left?",
       ["containers", "per_container", "given_away"],
       [("bought", "containers * per_container", "items bought"),
        ("left", "bought - given_away", "remove the ones given away")],
       lambda rng: (lambda a, b: (a, b, _r(rng, 1, a * b - 1)))(
           _r(rng, 2, 12), _r(rng, 2, 20))),
    _t("wage_spend", "{Name} earns {a} dollars per hour as a {worker} and "
       "works {b} hours. {Pronoun} spends {c} dollars. "
       "How many dollars does {name} have left?",
       ["wage", "hours", "spent"],
       [("earned", "wage * hours", "money earned"),
        ("left", "earned - spent", "subtract the money spent")],
       lambda rng: (lambda a, b: (a, b, _r(rng, 1, a * b - 1)))(
           _r(rng, 5, 40), _r(rng, 2, 12))),
    _t("discount", "A coat costs {a} dollars. It is on sale for {b}% off. "
       "What is the sale price in dollars?",
       ["price", "percent_off"],
       [("discount", "price * percent_off / 100", "the discount amount"),
        ("sale_price", "price - discount", "price after the discount")],
       _sample_discount),
    _t("share_then_add", "{a} {item} are shared equally among {b} children. "
       "Each child then finds {c} more. "
       "How many {item} does each child have?",
       ["total", "children", "found"],
       [("each", "total / children", "the equal share"),
        ("now_each", "each + found", "add the ones found")],
       _sample_share_then_add),
    _t("buy_with_budget", "{Name} has {a} dollars. {Pronoun} buys {b} "
       "{item} that cost {c} dollars each. "
       "How many dollars does {name} have left?",
       ["money", "count", "price"],
       [("cost", "count * price", "total cost"),
        ("left", "money - cost", "money left after buying")],
       _sample_buy_with_budget),
    # ---- three steps ----
    _t("two_purchases", "{Name} buys {a} {item} at {b} dollars each and {c} "
       "{containers} at {d} dollars each. "
       "How many dollars does {name} spend in total?",
       ["items", "item_price", "containers", "container_price"],
       [("items_cost", "items * item_price", "cost of the items"),
        ("containers_cost", "containers * container_price",
         "cost of the containers"),
        ("total_cost", "items_cost + containers_cost", "add both costs")],
       lambda rng: (_r(rng, 2, 12), _r(rng, 2, 30), _r(rng, 2, 9),
                    _r(rng, 2, 30))),
    _t("percent_left", "A shop has {a} {item}. It sells {b}% of them in the "
       "morning and {c} in the afternoon. How many {item} are left?",
       ["total", "percent_morning", "sold_afternoon"],
       [("sold_morning", "total * percent_morning / 100", "morning sales"),
        ("sold", "sold_morning + sold_afternoon", "all items sold"),
        ("left", "total - sold", "items left")],
       _sample_percent_left),
    _t("farm_income", "A farm has {a} cows. Each cow gives {b} liters of milk "
       "a day. Milk sells for {c} dollars per liter. "
       "How many dollars does the farm make in {d} days?",
       ["cows", "liters_per_cow", "price_per_liter", "days"],
       [("liters", "cows * liters_per_cow", "milk per day"),
        ("daily_income", "liters * price_per_liter", "money per day"),
        ("income", "daily_income * days", "money in all the days")],
       lambda rng: (_r(rng, 2, 30), _r(rng, 2, 20), _r(rng, 2, 9),
                    _r(rng, 2, 9))),
    # ---- four steps ----
    _t("weekly_running", "{Name} runs {a} miles on each weekday and {b} miles "
       "on each weekend day. How many miles does {name} run in {c} weeks?",
       ["weekday_miles", "weekend_miles", "weeks"],
       [("weekdays_total", "weekday_miles * 5", "five weekdays"),
        ("weekend_total", "weekend_miles * 2", "two weekend days"),
        ("week_total", "weekdays_total + weekend_total", "miles per week"),
        ("total", "week_total * weeks", "miles in all the weeks")],
       lambda rng: (_r(rng, 1, 15), _r(rng, 1, 20), _r(rng, 2, 12))),
    _t("trip_cost", "A trip is {a} miles long. A car goes {b} miles on each "
       "gallon, and gas costs {c} dollars per gallon. Food costs {d} dollars. "
       "{e} friends share the cost equally. "
       "How many dollars does each friend pay?",
       ["miles", "miles_per_gallon", "gas_price", "food", "friends"],
       [("gallons", "miles / miles_per_gallon", "gallons of gas needed"),
        ("gas_cost", "gallons * gas_price", "cost of the gas"),
        ("total_cost", "gas_cost + food", "add the food"),
        ("each_pays", "total_cost / friends", "split the cost equally")],
       _sample_trip),
)
TEMPLATES_BY_NAME: Dict[str, Template] = {t.name: t for t in TEMPLATES}
_SLOTS = "abcdefgh"


def instance_key(template: str, numbers: Sequence[int]) -> str:
  """The identity of a template instance: template id and number tuple."""
  return f"{template}:{','.join(str(n) for n in numbers)}"


def split_of(template: str, numbers: Sequence[int]) -> str:
  """The only split a template instance may appear in (seed independent)."""
  digest = hashlib.sha256(instance_key(template, numbers).encode()).digest()
  bucket = int.from_bytes(digest[:8], "big") % 100
  for split, buckets in _SPLIT_BUCKETS.items():
    if bucket in buckets:
      return split
  raise AssertionError(bucket)


def render(template: Template, numbers: Sequence[int], name: str,
           pronoun: str, item: str, container: Tuple[str, str],
           worker: str) -> Tuple[str, str, float]:
  """Renders one instance as (question, program, answer)."""
  slots = dict(zip(_SLOTS, numbers))
  question = template.question.format(
      name=name, Name=name, pronoun=pronoun, Pronoun=pronoun.capitalize(),
      item=item, container=container[0], containers=container[1],
      worker=worker, **slots)
  ask = question[question.rindex(". ") + 2:]
  lines = ["def solution():", f'    """{ask}"""']
  for var, value in zip(template.givens, numbers):
    lines.append(f"    {var} = {value}")
  for var, expr, comment in template.steps:
    lines.append(f"    # {comment}")
    lines.append(f"    {var} = {expr}")
  lines.append(f"    result = {template.steps[-1][0]}")
  lines.append("    return result")
  program = "\n".join(lines) + "\n"
  return question, program, _evaluate(template, numbers)


def _evaluate(template: Template, numbers: Sequence[int]) -> float:
  env: Dict[str, float] = dict(zip(template.givens, numbers))
  for var, expr, _ in template.steps:
    env[var] = eval(expr, {"__builtins__": {}}, env)  # pylint: disable=eval-used
  value = env[template.steps[-1][0]]
  return int(value) if float(value).is_integer() else float(value)


def generate(split: str, n: int, seed: int = 0,
             templates: Optional[Sequence[str]] = None) -> List["ProgramRecord"]:
  """Generates `n` problems of `split`, deterministically given `seed`.

  Templates are used round-robin so every template gets n/len(templates)
  problems (the first ones one more when it does not divide).

  Args:
    split: "train", "validation" or "test".
    n: number of problems.
    seed: random seed; the same (split, n, seed) gives the same records.
    templates: template names to use (default: all of `TEMPLATES`).

  Returns:
    `ProgramRecord`s with teacher "synthetic", prompt_variant = template name
    and `extra` = {"template", "steps", "numbers", "split"}.

  Raises:
    ValueError: unknown split or template, or a template whose instance space
      in this split is too small for the request.
  """
  if split not in SPLITS:
    raise ConfigError(f"unknown split {split!r}; expected one of {SPLITS}")
  chosen = _choose_templates(templates)
  rng = random.Random(f"pad_jax.synthetic:{seed}:{split}")
  seen = set()
  records = []
  for index in range(n):
    template = chosen[index % len(chosen)]
    numbers = _draw_instance(template, split, rng, seen)
    name, pronoun = rng.choice(NAMES)
    question, program, answer = render(
        template, numbers, name, pronoun, rng.choice(ITEMS),
        rng.choice(CONTAINERS), rng.choice(WORKERS))
    records.append(ProgramRecord(
        id=f"synthetic-{split}-{seed}-{index:06d}", question=question,
        program=program, answer=answer, teacher=TEACHER,
        prompt_variant=template.name, sample=0,
        extra={"template": template.name, "steps": template.num_steps,
               "numbers": list(numbers), "split": split}))
  return records


def _choose_templates(names: Optional[Sequence[str]]) -> List[Template]:
  if names is None:
    return list(TEMPLATES)
  unknown = [name for name in names if name not in TEMPLATES_BY_NAME]
  if unknown or not names:
    raise ConfigError(f"unknown templates {unknown}; expected some of "
                     f"{sorted(TEMPLATES_BY_NAME)}")
  return [TEMPLATES_BY_NAME[name] for name in names]


def _draw_instance(template: Template, split: str, rng: random.Random,
                   seen: set, max_tries: int = 200) -> Tuple[int, ...]:
  """Draws an instance of `split`, unseen in this call while any are left."""
  fallback = None
  for _ in range(max_tries):
    numbers = tuple(template.sample(rng))
    if split_of(template.name, numbers) != split:
      continue
    key = instance_key(template.name, numbers)
    if key not in seen:
      seen.add(key)
      return numbers
    fallback = numbers
  if fallback is None:
    raise ConfigError(f"template {template.name!r} has no instance in split "
                     f"{split!r}")
  return fallback  # Instance space used up: repeat with new surface words.


def write_splits(out_dir: str, sizes: Optional[Mapping[str, int]] = None,
                 seed: int = 0) -> Dict[str, str]:
  """Writes `<out_dir>/<split>.jsonl` program datasets; returns the paths."""
  sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
  os.makedirs(out_dir, exist_ok=True)
  paths = {}
  for split, n in sizes.items():
    paths[split] = os.path.join(out_dir, f"{split}.jsonl")
    write_programs(paths[split], generate(split, n, seed))
  return paths


def demo_vocabulary():
  """The demo student's `seqio.Vocabulary` (1024 ids, digits split)."""
  # Deferred on purpose: pad_jax.student.vocab imports seqio and TensorFlow (seconds),
  # which generating or writing synthetic problems never needs.
  from pad_jax.student import vocab  # pylint: disable=g-import-not-at-top
  return vocab.CodeT5Vocabulary(DEMO_VOCAB_DIR, extra_ids=0)


def train_demo_vocab(out_dir: str = DEMO_VOCAB_DIR,
                     vocab_size: int = DEMO_VOCAB_SIZE,
                     data_dir: Optional[str] = None) -> str:
  """Re-creates the committed demo vocabulary (deterministic).

  The corpus is 20,000 synthetic train problems (questions and programs)
  plus the GSM8K train questions, so that both demo tasks tokenize compactly.

  Args:
    out_dir: where to write `vocab.json`, `merges.txt`, `pad_vocab.json`.
    vocab_size: number of ids (a multiple of 8 for sharded embeddings).
    data_dir: benchmark directory (default: `benchmarks.default_data_dir()`).

  Returns:
    `out_dir`.
  """
  from pad_jax.student import vocab  # pylint: disable=g-import-not-at-top  # deferred: see demo_vocabulary
  records = generate("train", 20000, seed=1)
  texts = [r.question for r in records] + [r.program for r in records]
  texts += [e.question for e in benchmarks.load("gsm8k", "train", data_dir)]
  return vocab.train_bpe_vocab(texts, out_dir, vocab_size, split_digits=True)
