"""A loopback OpenAI-compatible server for tests and benchmarks (real HTTP).

    with FakeOpenAI(responder=fn, latency_s=0.2, faults={"429": 0.1}) as server:
      client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")

Endpoints: `POST /v1/chat/completions`, `POST /v1/files` (multipart),
`GET /v1/files/{id}`, `GET /v1/files/{id}/content`, `POST /v1/batches`,
`GET /v1/batches/{id}` (validating -> in_progress -> completed over polls).

Fault injection is deterministic: a request body's hash picks its fault, and
a fault hits only the first attempt of that body (so retries succeed), except
`fail_always`. Kinds: `429` (with Retry-After), `500`, `truncate` (a body cut
short of its Content-Length), `malformed` (a complete but invalid JSON body),
`drop` (connection closed without a reply), `slow` (reply after `slow_s`).

`responder(request_json) -> str` writes the completion text (default: a
chatty markdown reply around `def solution(): return 0`). Every chat request
is logged in `server.requests` (thread-safe).
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import http.server
import json
import re
import socketserver
import threading
import time
import uuid
from typing import Any, Callable, Optional

FAULT_KINDS = ("429", "500", "truncate", "malformed", "drop", "slow", "fail_always")
QUESTION_RE = re.compile(r"Question: (.*?)\n\nWrite", re.S)


def question_of(request: dict[str, Any]) -> str:
  """The question in the last user message of a chat request."""
  content = request["messages"][-1]["content"]
  match = QUESTION_RE.search(content)
  return match.group(1) if match else content


def prompt_digest(messages: list[dict[str, str]]) -> str:
  """A hash of chat messages (what identifies a prompt across runs)."""
  return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def chatty(program: str) -> str:
  """Wraps a program the way chat models do: prose, a fence, a usage line."""
  return (f"Sure! Let's solve it step by step in Python.\n\n```python\n{program}\n\n"
          f"print(solution())\n```\n\nRunning this prints the answer.")


def default_responder(request: dict[str, Any]) -> str:
  del request
  return chatty("def solution():\n    result = 0\n    return result")


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
  daemon_threads = True
  allow_reuse_address = True
  request_queue_size = 256

  def handle_error(self, request, client_address) -> None:
    import sys  # pylint: disable=g-import-not-at-top
    if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
      return  # The client gave up on a slow reply: expected under fault injection.
    super().handle_error(request, client_address)


class FakeOpenAI:
  """The server; see the module docstring."""

  def __init__(self, responder: Callable[[dict], str] = default_responder,
               latency_s: float = 0.0, faults: Optional[dict[str, float]] = None,
               api_key: Optional[str] = None, slow_s: float = 3.0, retry_after_s: float = 0.05,
               batch_polls_to_complete: int = 2):
    for kind in faults or {}:
      if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {kind!r}; expected one of {FAULT_KINDS}")
    self.responder = responder
    self.latency_s = latency_s
    self.faults = dict(faults or {})
    self.api_key = api_key
    self.slow_s = slow_s
    self.retry_after_s = retry_after_s
    self.batch_polls_to_complete = batch_polls_to_complete
    self.requests: list[dict[str, Any]] = []
    self.attempts: dict[str, int] = {}
    self.auth_headers: set[str] = set()
    self.files: dict[str, dict[str, Any]] = {}
    self.batches: dict[str, dict[str, Any]] = {}
    self.lock = threading.Lock()
    self._httpd: Optional[_Server] = None
    self._thread: Optional[threading.Thread] = None

  # -- lifecycle -------------------------------------------------------------

  def start(self) -> "FakeOpenAI":
    handler = type("Handler", (_Handler,), {"fake": self})
    self._httpd = _Server(("127.0.0.1", 0), handler)
    self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                    kwargs={"poll_interval": 0.05})
    self._thread.start()
    return self

  def stop(self) -> None:
    if self._httpd:
      self._httpd.shutdown()
      self._httpd.server_close()
      self._httpd = None

  def __enter__(self) -> "FakeOpenAI":
    return self.start()

  def __exit__(self, *exc_info) -> None:
    self.stop()

  @property
  def base_url(self) -> str:
    host, port = self._httpd.server_address[:2]
    return f"http://{host}:{port}/v1"

  # -- behaviour -------------------------------------------------------------

  def fault_for(self, body: bytes) -> tuple[Optional[str], int, str]:
    """(fault or None, attempt number, body hash) for a chat request body."""
    digest = hashlib.sha256(body).hexdigest()
    with self.lock:
      attempt = self.attempts.get(digest, 0) + 1
      self.attempts[digest] = attempt
    u = int(digest[:8], 16) / 2**32
    edge = 0.0
    for kind in FAULT_KINDS:
      edge += self.faults.get(kind, 0.0)
      if u < edge:
        if kind == "fail_always" or attempt == 1:
          return kind, attempt, digest
        return None, attempt, digest
    return None, attempt, digest

  def completion(self, request: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion object answering `request`."""
    n = int(request.get("n") or 1)
    choices, completion_tokens = [], 0
    for i in range(n):
      text = self.responder(dict(request, choice_index=i))
      completion_tokens += max(1, len(text) // 4)
      choices.append({"index": i, "message": {"role": "assistant", "content": text},
                      "finish_reason": "stop", "logprobs": None})
    prompt_tokens = sum(len(m.get("content") or "") for m in request["messages"]) // 4
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
            "created": int(time.time()), "model": request.get("model", "fake"),
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}

  def chat_requests_for(self, question: str) -> int:
    with self.lock:
      return sum(1 for r in self.requests if r["question"] == question)


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"
  fake: FakeOpenAI

  def log_message(self, *args) -> None:  # Quiet.
    del args

  # -- plumbing --------------------------------------------------------------

  def _body(self) -> bytes:
    length = int(self.headers.get("Content-Length") or 0)
    return self.rfile.read(length) if length else b""

  def _send(self, status: int, payload: Any, headers: Optional[dict[str, str]] = None,
            raw: Optional[bytes] = None, content_type: str = "application/json",
            declared_length: Optional[int] = None) -> None:
    data = raw if raw is not None else json.dumps(payload).encode()
    self.send_response(status)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(declared_length or len(data)))
    for key, value in (headers or {}).items():
      self.send_header(key, value)
    self.end_headers()
    self.wfile.write(data)
    self.wfile.flush()

  def _error(self, status: int, message: str, headers: Optional[dict[str, str]] = None) -> None:
    self._send(status, {"error": {"message": message, "type": "fake_error", "code": status}},
               headers)

  def _authorized(self) -> bool:
    header = self.headers.get("Authorization", "")
    with self.fake.lock:
      self.fake.auth_headers.add(header)
    if self.fake.api_key is not None and header != f"Bearer {self.fake.api_key}":
      self._error(401, "invalid api key")
      return False
    return True

  # -- routes ----------------------------------------------------------------

  def do_POST(self) -> None:  # pylint: disable=invalid-name
    body = self._body()
    if not self._authorized():
      return
    if self.path.endswith("/chat/completions"):
      self._chat(body)
    elif self.path.endswith("/files"):
      self._upload(body)
    elif self.path.endswith("/batches"):
      self._create_batch(body)
    else:
      self._error(404, f"no route {self.path}")

  def do_GET(self) -> None:  # pylint: disable=invalid-name
    if not self._authorized():
      return
    match = re.search(r"/files/([\w-]+)(/content)?$", self.path)
    if match:
      record = self.fake.files.get(match.group(1))
      if record is None:
        return self._error(404, "no such file")
      if match.group(2):
        return self._send(200, None, raw=record["data"], content_type="application/octet-stream")
      return self._send(200, record["object"])
    match = re.search(r"/batches/([\w-]+)$", self.path)
    if match:
      return self._poll_batch(match.group(1))
    if re.search(r"/batches(\?.*)?$", self.path):
      with self.fake.lock:
        data = [b["object"] for b in self.fake.batches.values()][::-1]  # Newest first.
      return self._send(200, {"object": "list", "data": data, "has_more": False,
                              "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None})
    self._error(404, f"no route {self.path}")

  def _chat(self, body: bytes) -> None:
    try:
      request = json.loads(body)
    except json.JSONDecodeError:
      return self._error(400, "invalid JSON body")
    fault, attempt, digest = self.fake.fault_for(body)
    with self.fake.lock:
      self.fake.requests.append({"question": question_of(request), "n": request.get("n", 1),
                                 "prompt_digest": prompt_digest(request["messages"]),
                                 "attempt": attempt, "fault": fault, "digest": digest,
                                 "time": time.monotonic()})
    if self.fake.latency_s:
      time.sleep(self.fake.latency_s)
    if fault == "429":
      return self._error(429, "rate limited", {"Retry-After": str(self.fake.retry_after_s)})
    if fault in ("500", "fail_always"):
      return self._error(500, "internal error")
    if fault == "drop":
      self.close_connection = True
      self.connection.shutdown(2)
      return
    if fault == "slow":
      time.sleep(self.fake.slow_s)
    data = json.dumps(self.fake.completion(request)).encode()
    if fault == "truncate":
      self.close_connection = True
      return self._send(200, None, raw=data[:len(data) // 2], declared_length=len(data))
    if fault == "malformed":
      return self._send(200, None, raw=data[:len(data) // 2])
    self._send(200, None, raw=data)

  def _upload(self, body: bytes) -> None:
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
    fields = {}
    for part in message.iter_parts():
      name = part.get_param("name", header="content-disposition")
      fields[name] = (part.get_filename(), part.get_payload(decode=True))
    if "file" not in fields:
      return self._error(400, "missing file")
    file_id = f"file-{uuid.uuid4().hex[:16]}"
    filename, data = fields["file"]
    purpose = (fields.get("purpose") or (None, b"batch"))[1].decode()
    self.fake.files[file_id] = {"data": data, "object": _file_object(file_id, filename, data,
                                                                     purpose)}
    self._send(200, self.fake.files[file_id]["object"])

  def _create_batch(self, body: bytes) -> None:
    request = json.loads(body)
    if request.get("input_file_id") not in self.fake.files:
      return self._error(400, "unknown input_file_id")
    batch_id = f"batch_{uuid.uuid4().hex[:16]}"
    batch = {"id": batch_id, "object": "batch", "endpoint": request["endpoint"],
             "errors": None, "input_file_id": request["input_file_id"],
             "completion_window": request.get("completion_window", "24h"),
             "status": "validating", "output_file_id": None, "error_file_id": None,
             "created_at": int(time.time()), "request_counts": {"total": 0, "completed": 0,
                                                                "failed": 0},
             "metadata": request.get("metadata")}
    with self.fake.lock:
      self.fake.batches[batch_id] = {"object": batch, "polls": 0}
    self._send(200, batch)

  def _poll_batch(self, batch_id: str) -> None:
    with self.fake.lock:
      state = self.fake.batches.get(batch_id)
      if state is None:
        return self._error(404, "no such batch")
      state["polls"] += 1
      batch = state["object"]
      if batch["status"] == "validating":
        batch["status"] = "in_progress"
      elif batch["status"] == "in_progress" and state["polls"] >= self.fake.batch_polls_to_complete:
        self._run_batch(batch)
    self._send(200, batch)

  def _run_batch(self, batch: dict[str, Any]) -> None:
    lines = self.fake.files[batch["input_file_id"]]["data"].decode().splitlines()
    outputs, errors = [], []
    for line in lines:
      item = json.loads(line)
      body = json.dumps(item["body"], sort_keys=True).encode()
      digest = hashlib.sha256(body).hexdigest()
      u = int(digest[:8], 16) / 2**32
      if u < self.fake.faults.get("fail_always", 0.0):
        errors.append({"id": f"batch_req_{uuid.uuid4().hex[:8]}", "custom_id": item["custom_id"],
                       "response": {"status_code": 500, "request_id": "r", "body": {
                           "error": {"message": "internal error"}}}, "error": None})
        continue
      self.fake.requests.append({"question": question_of(item["body"]),
                                 "prompt_digest": prompt_digest(item["body"]["messages"]),
                                 "n": item["body"].get("n", 1), "attempt": 1, "fault": None,
                                 "digest": digest, "time": time.monotonic()})
      outputs.append({"id": f"batch_req_{uuid.uuid4().hex[:8]}", "custom_id": item["custom_id"],
                      "response": {"status_code": 200, "request_id": "r",
                                   "body": self.fake.completion(item["body"])}, "error": None})
    for records, field in ((outputs, "output_file_id"), (errors, "error_file_id")):
      if records:
        file_id = f"file-{uuid.uuid4().hex[:16]}"
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
        self.fake.files[file_id] = {"data": data, "object": _file_object(
            file_id, f"{field}.jsonl", data, "batch_output")}
        batch[field] = file_id
    batch["status"] = "completed"
    batch["request_counts"] = {"total": len(lines), "completed": len(outputs),
                               "failed": len(errors)}


def _file_object(file_id: str, filename: Optional[str], data: bytes, purpose: str) -> dict:
  return {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
          "filename": filename or "upload.jsonl", "purpose": purpose, "status": "processed"}


def main() -> None:
  """`python tests/fake_openai.py [LATENCY_S]`: serve until killed; prints the base URL."""
  import sys  # pylint: disable=g-import-not-at-top
  server = FakeOpenAI(latency_s=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0).start()
  print(server.base_url, flush=True)
  threading.Event().wait()


if __name__ == "__main__":
  main()
