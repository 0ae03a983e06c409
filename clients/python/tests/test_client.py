"""The Python client against the real tactful binary (TACTFUL_BIN, else target/debug/tactful),
started on a free loopback port with its state in a temporary directory.

Run by scripts/python-client-test.sh (part of scripts/test.sh), which installs the package from
clients/python into a venv first.
"""

import hashlib
import importlib.metadata
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import json_format

import tactful
from tactful import Tactful, TactfulError, candidate, event, stable_id
from tactful.v1 import ranker_pb2

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "examples" / "candidates.json"
EXAMPLE = ROOT / "clients" / "python" / "examples" / "rank_sample.py"
# The five-line example runs in the venv made by `pip install ./clients/python` alone (no
# numpy, no test tools) when the test script provides one.
PYTHON = os.environ.get("TACTFUL_EXAMPLE_PYTHON", sys.executable)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def binary():
    path = Path(os.environ.get("TACTFUL_BIN", ROOT / "target" / "debug" / "tactful"))
    assert path.exists(), f"{path}: build the server first (cargo build)"
    return path


class Server:
    def __init__(self, binary, tmp):
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TACTFUL_")}
        self.process = subprocess.Popen(
            [str(binary), "serve", "--listen", self.target, "--admin-listen", "off",
             "--data-dir", str(tmp / "data")],
            env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"),
        )
        channel = grpc.insecure_channel(self.target)
        try:
            grpc.channel_ready_future(channel).result(timeout=60)
        finally:
            channel.close()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(binary, tmp_path_factory):
    s = Server(binary, tmp_path_factory.mktemp("server"))
    yield s
    s.stop()


@pytest.fixture
def client(server):
    with Tactful(server.target, rank_timeout=5.0) as c:
        yield c


def sample_candidates():
    return json.loads(SAMPLE.read_text())["candidates"]


# -- the package -------------------------------------------------------------------------------

def test_the_package_depends_on_grpcio_and_protobuf_only_and_is_typed():
    requires = importlib.metadata.requires("tactful") or []
    runtime = sorted(re.split(r"[<>=!~; \[]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r)
    assert runtime == ["grpcio", "protobuf"], requires
    assert (Path(tactful.__file__).parent / "py.typed").exists()
    assert (Path(tactful.__file__).parent / "v1" / "ranker_pb2.pyi").exists()


def test_stable_id_is_the_hashing_the_readme_documents():
    # The README's own expression, taken from the README and evaluated: if either changes,
    # this fails.
    readme = (ROOT / "README.md").read_text()
    documented = re.search(r"`(int\.from_bytes\(hashlib\.sha256\(s\.encode\(\)\)[^`]*)`", readme)
    assert documented, "the README no longer shows the hashing in Python"
    for s in ["sku-123", "", "商品-42", "x" * 300]:
        assert stable_id(s) == eval(documented.group(1), {"hashlib": hashlib, "s": s})
        assert stable_id(s) == int(hashlib.sha256(s.encode()).hexdigest()[:16], 16)
    assert 0 <= stable_id("sku-123") < 2**64
    assert stable_id("sku-123") != stable_id("sku-124")


def test_embeddings_go_in_the_bytes_form():
    c = candidate({"item_id": 1, "score": 0.5}, np.array([1.0, -2.5], dtype=np.float64))
    assert c.embedding_f32le == struct.pack("<2f", 1.0, -2.5)
    assert not c.embedding
    c = candidate({"itemId": "2", "score": 1, "embedding": [0.25, 4.0]})
    assert c.embedding_f32le == struct.pack("<2f", 0.25, 4.0)
    with pytest.raises(ValueError):
        candidate({"item_id": 3, "score": 1}, np.zeros((2, 2)))


def test_candidates_in_either_json_form():
    short = candidate({"item_id": 7, "score": 0.5, "evidence": ["browsing", "search"]})
    proto = candidate({"itemId": "7", "score": 0.5,
                       "evidence": ["DATA_DIMENSION_BROWSING", "DATA_DIMENSION_SEARCH"]})
    assert short == proto
    with pytest.raises(Exception, match="brnd"):
        candidate({"item_id": 7, "score": 0.5, "brnd": 1})


# -- against the server ------------------------------------------------------------------------

def test_the_sample_file_is_ranked_with_reasons(client):
    result = client.rank("py-alice", sample_candidates(), k=8, explain=True)
    assert not result.degraded, result
    assert len(result.items) == 8
    sent = {int(c["itemId"]) for c in sample_candidates()}
    assert {i.item_id for i in result.items} <= sent
    assert all(i.reason for i in result.items), result.items
    assert result.policy_version.startswith("default@")
    # Candidates produced only from data a new user has not consented to are dropped.
    dropped = {d.item_id: d.rule for d in result.dropped}
    assert dropped.get(1004) == "CONSENT" and dropped.get(5001) == "CONSENT", dropped
    viewed = [i for i in result.items if i.reason_code == "BECAUSE_YOU_VIEWED"]
    assert viewed and viewed[0].dimensions == ("browsing",)


def test_the_sample_file_is_a_rank_request_as_grpcurl_and_ghz_send_it(client):
    request = json_format.Parse(SAMPLE.read_text(), ranker_pb2.RankRequest())
    assert request.user_id == "alice" and len(request.candidates) >= 10
    result = client.rank_request(request)
    assert not result.degraded and result.items


def test_numpy_embeddings_are_ranked_and_a_bad_one_is_named(client):
    vectors = np.random.default_rng(7).normal(size=(5, 16)).astype(np.float32)
    candidates = [{"item_id": 100 + i, "score": 1 - i / 10, "category_id": 1} for i in range(5)]
    result = client.rank("py-emb", candidates, embeddings=vectors)
    assert not result.degraded
    assert sorted(result.item_ids) == [100, 101, 102, 103, 104]
    ragged = [vectors[0], vectors[1][:8]]
    with pytest.raises(TactfulError) as e:
        client.rank("py-emb", candidates[:2], embeddings=ragged)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "candidates[1]" in e.value.details


def test_events_and_the_preference_centre_change_the_next_ranking(client):
    user = "py-bob"
    before = client.rank(user, sample_candidates())
    brand_8 = {int(c["itemId"]) for c in sample_candidates() if c.get("brandId") == 8}
    assert brand_8 & set(before.item_ids), "the sample should rank some of brand 8 first"

    reply = client.record(user, [event("block_brand", brand_id=8),
                                 event("impression", 1001), {"type": "EVENT_TYPE_CLICK", "itemId": "2001"}])
    assert reply.applied == 3 and not reply.rejected
    assert list(client.profile(user).blocked_brands) == [8]
    assert not brand_8 & set(client.rank(user, sample_candidates()).item_ids)

    client.undo(user, "block_brand", 8)
    assert list(client.profile(user).blocked_brands) == []

    profile = client.set_consent(user, grant=["location"], deny=["browsing"])
    consent = {c.dimension: c.granted for c in profile.consent}
    assert consent[tactful.v1.common_pb2.DATA_DIMENSION_LOCATION] is True
    assert consent[tactful.v1.common_pb2.DATA_DIMENSION_BROWSING] is False
    profile = client.update_interests(user, [("category", 5, 0.8)])
    assert any(t.id == 5 for t in profile.interests)

    client.forget(user)
    assert not client.profile(user).known


def test_a_refused_event_is_named_and_a_bad_request_raises(client):
    reply = client.record("py-carol", [event("purchase", 0)])
    assert reply.applied == 0 and reply.rejected and reply.rejected[0].index == 0
    with pytest.raises(TactfulError) as e:
        client.rank("py-carol", [{"item_id": 1, "score": 1}, {"item_id": 1, "score": 0.5}])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "candidates[1].item_id" in e.value.details


# -- failing open ------------------------------------------------------------------------------

def test_an_unreachable_server_gives_the_upstream_order_marked_degraded():
    port = free_port()  # nothing listens there
    with Tactful(f"127.0.0.1:{port}", rank_timeout=0.2) as c:
        started = time.monotonic()
        result = c.rank("u", sample_candidates(), k=5)
        took = time.monotonic() - started
    assert result.degraded and result.degraded_reason == "CLIENT_UNAVAILABLE", result
    assert result.item_ids == [int(x["itemId"]) for x in sample_candidates()[:5]]
    assert [i.upstream_position for i in result.items] == [0, 1, 2, 3, 4]
    assert took < 0.2 + 0.3, took


def test_a_server_that_never_answers_fails_open_within_the_deadline():
    # A TCP listener that accepts and then says nothing: the call can only time out.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    try:
        with Tactful(f"127.0.0.1:{listener.getsockname()[1]}", rank_timeout=0.15) as c:
            started = time.monotonic()
            result = c.rank("u", sample_candidates())
            took = time.monotonic() - started
    finally:
        listener.close()
    assert result.degraded and result.degraded_reason == "CLIENT_DEADLINE_EXCEEDED", result
    assert len(result.items) == len(sample_candidates())
    assert 0.15 <= took < 0.15 + 0.3, took


def test_the_five_line_example_ranks_and_then_fails_open(binary, tmp_path):
    s = Server(binary, tmp_path)
    env = dict(os.environ, TACTFUL_ADDR=s.target)
    try:
        up = subprocess.run([PYTHON, str(EXAMPLE)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    finally:
        s.stop()
    assert up.returncode == 0, up.stderr
    lines = up.stdout.splitlines()
    assert len(lines) == 8 and "degraded" not in up.stdout, up.stdout
    assert any("Because you" in line for line in lines), up.stdout

    started = time.monotonic()
    down = subprocess.run([PYTHON, str(EXAMPLE)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    lines = down.stdout.splitlines()
    assert len(lines) == 8 and all("degraded" in line for line in lines), down.stdout
    assert [int(line.split()[0]) for line in lines] == [int(c["itemId"]) for c in sample_candidates()[:8]]
    # The whole process, interpreter start included, well within a second.
    assert time.monotonic() - started < 5, "the fail-open run was slow"
