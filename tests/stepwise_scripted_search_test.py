"""Step-wise search (`--decode=stepwise_beam`'s loop) with a scripted proposer and the real sandbox.

No model: the proposer writes candidate lines from a script (a character
vocabulary, one id per character), so what is tested is the search around
it: which prefixes the real executor prunes, and that a program holding a
list, a dict and a string on its way to the answer is written whole and
reaches the gold answer. `tests/stepwise_search_test.py` runs the same
search with a tiny trained t5x student.
"""

import json

from pad_jax.decoding import stepwise_proposer as proposer_lib
from pad_jax.decoding import stepwise_scorers as scorers
from pad_jax.decoding import stepwise_search as search_lib
from pad_jax.execution import limits

EOS = 1


class _CharVocabulary:
  eos_id = EOS

  def encode(self, text):
    return [ord(c) + 2 for c in text]

  def decode(self, ids):
    return "".join(chr(i - 2) for i in ids if i >= 2)


class _ScriptedProposer:
  """Candidate lines by prefix text: `script[prefix] = [(line, logprob), ...]`; the k-th
  row of a prefix in a call gets the k-th line (cycling)."""

  def __init__(self, script):
    self.script, self.vocabulary = script, _CharVocabulary()

  def _lines(self, prefixes):
    seen, out = {}, []
    for prefix in prefixes:
      text = self.vocabulary.decode(prefix)
      k = seen[text] = seen.get(text, -1) + 1
      line, logprob = self.script[text][k % len(self.script[text])]
      out.append(proposer_lib.Proposal(tuple(self.vocabulary.encode(line)), logprob,
                                       proposer_lib.NEWLINE))
    return out

  # The stateless interface, and the session one (with decoder cache rows).
  def propose(self, encoded, prefixes, argmax, line=True):
    del encoded, argmax, line
    return self._lines(prefixes)

  def session(self, encoded, rows_per_question):
    del encoded, rows_per_question
    return _Session(self)


class _Session:
  def __init__(self, proposer):
    self.proposer = proposer

  def propose(self, questions, parents, prefixes, argmax, line=True):
    del questions, parents, argmax, line
    return self.proposer._lines(prefixes), list(range(len(prefixes)))  # pylint: disable=protected-access


HEADER = "def solution():\n"
STEPS = ["    prices = [3, 4, 5]\n", "    unit = 'dollars'\n",
         "    stock = {'pens': 2, 'books': 3}\n",
         "    total = sum(prices) * stock['books']\n", "    return total\n"]
# At every step the more likely candidate raises (pruned, `runtime_error`).
FAILING = "    oops = 1 / 0\n"


def _script():
  script = {"": [(HEADER, -0.1)]}
  prefix = HEADER
  for step in STEPS:
    script[prefix] = [(FAILING, -0.01), (step, -0.5)]
    prefix += step
  return script


def test_a_program_holding_a_list_a_dict_and_a_string_reaches_its_answer(tmp_path):
  question = {"id": "q1", "question": "Three pens cost 3, 4 and 5 dollars ...", "answer": 36}
  out = tmp_path / "out.jsonl"
  with limits.ExecLimits(workers=1).executor() as executor:
    search = search_lib.StepwiseSearch(_ScriptedProposer(_script()), executor, scorers.LogProbScorer(),
                                       beam_size=1, step_candidates=2)
    search_lib.decode_into(search, lambda q: [0], [(0, question)], str(out), batch_size=1,
                           progress=False)
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["complete"] and row["prediction"] == HEADER + "".join(STEPS)
    # Every value step was kept; only the raising lines were pruned.
    kept = [step["kept"][0]["line"] for step in row["steps"]]
    assert kept == [HEADER.strip()] + [s.strip() for s in STEPS]
    for step in row["steps"][1:]:
      assert step["pruned"] == {"runtime_error": 1}, row["steps"]
    (result,) = executor.run([row["prediction"]])
  assert result.ok and limits.ExecLimits().matches(result.value, question["answer"])


def test_a_nan_step_is_still_pruned():
  script = {"": [(HEADER, -0.1)],
            HEADER: [("    x = float('inf') - float('inf')\n", -0.01), ("    x = 3\n", -0.5)],
            HEADER + "    x = 3\n": [("    return x\n", -0.1)]}
  with limits.ExecLimits(workers=1).executor() as executor:
    search = search_lib.StepwiseSearch(_ScriptedProposer(script), executor, scorers.LogProbScorer(),
                                       beam_size=1, step_candidates=2)
    (result,) = search.search(["q"], [[0]])
  assert result["complete"] and result["prediction"].endswith("    x = 3\n    return x\n")
  assert result["steps"][1]["pruned"] == {"bad_return": 1}
