#!/usr/bin/env python3
"""Writes the ghz request payloads of this directory (data/*.json), deterministically.

The payloads are committed so that a load test needs only ghz; this script is how they were
made and how to change them. scripts/check-k8s.sh regenerates them into a scratch directory
and fails if they differ from the committed ones, then parses each into its request message
with the real protos.

Shapes follow proto/tactful/v1/ranker.proto and events.proto in the proto3 JSON mapping
(lowerCamelCase field names, enum values by name):
- a Rank request as a recommender sends one for a home feed: 100 candidates in upstream order
  with falling scores, 64-dimensional unit embeddings, categories and brands skewed the way a
  catalogue is (a few dominate, so diversity has work to do), several evidence dimensions, k 20;
- the same with the identity policy, the baseline that measures gRPC and protobuf cost alone;
- an Events.Record batch of 32 events over 8 users: mostly impressions, some clicks, a cart and
  a favourite (no explicit feedback: each of those is fsynced, which a load test of ingestion
  should choose deliberately).

Standard library only: python3 benches/ghz/make-payloads.py [OUT_DIR] (default: ./data next to
this file).
"""

import json
import math
import random
import sys
from pathlib import Path

SEED = 20240601
CANDIDATES = 100
DIM = 64
K = 20
USER = "ghz-user-1"

EVIDENCE = [
    ["DATA_DIMENSION_BROWSING"],
    ["DATA_DIMENSION_FAVORITES"],
    ["DATA_DIMENSION_SEARCH"],
    ["DATA_DIMENSION_TRENDING"],
    ["DATA_DIMENSION_PURCHASES"],
    ["DATA_DIMENSION_BROWSING", "DATA_DIMENSION_SEARCH"],
]


def skewed(rng: random.Random, n: int) -> int:
    """1..n, small values far more often: a few categories and brands fill most feeds."""
    u = rng.random()
    return 1 + min(int(u * u * n), n - 1)


def unit_vector(rng: random.Random, dim: int) -> list:
    v = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    # Four decimals keep the file small; the server takes any finite floats.
    return [round(x / norm, 4) for x in v]


def rank_request(policy: str) -> dict:
    rng = random.Random(SEED)
    candidates = []
    for i in range(CANDIDATES):
        item_id = 100_000 + i * 13
        category = skewed(rng, 12)
        brand = skewed(rng, 30)
        c = {
            "itemId": item_id,
            # Upstream relevance falls with position, with some noise.
            "score": round(1.0 - i / CANDIDATES + 0.05 * rng.random(), 4),
            "categoryId": 1000 + category,
            "brandId": 500 + brand,
            "shopId": 7000 + brand * 3 + rng.randrange(3),
            "price": round(5.0 + rng.random() * 800.0, 2),
            "popularity": float(rng.randrange(10_000)),
            "embedding": unit_vector(rng, DIM),
            "evidence": EVIDENCE[rng.randrange(len(EVIDENCE))],
            "title": f"item {item_id}",
        }
        if i % 10 == 3:
            c["sponsored"] = True
        if i % 7 == 0:
            c["anchorItemId"] = 900_000 + i
            c["anchorTitle"] = f"item {900_000 + i}"
        candidates.append(c)
    request = {
        "userId": USER,
        "requestId": f"ghz-{policy or 'default'}",
        "surface": "home_feed",
        "context": {"locale": "en", "region": "CN-31", "utcOffsetMinutes": 480},
        "candidates": candidates,
        "k": K,
    }
    if policy:
        request["policy"] = policy
    return request


def record_request() -> dict:
    rng = random.Random(SEED + 1)
    events = []
    for n in range(32):
        user = f"ghz-user-{1 + n % 8}"
        item = 100_000 + rng.randrange(CANDIDATES) * 13
        if n == 13:
            kind = "EVENT_TYPE_CART"
        elif n == 21:
            kind = "EVENT_TYPE_FAVORITE"
        elif n % 5 == 4:
            kind = "EVENT_TYPE_CLICK"
        else:
            kind = "EVENT_TYPE_IMPRESSION"
        events.append(
            {
                "userId": user,
                "type": kind,
                "itemId": item,
                "categoryId": 1000 + skewed(rng, 12),
                "brandId": 500 + skewed(rng, 30),
                "surface": "home_feed",
                "source": "DATA_DIMENSION_BROWSING",
            }
        )
    return {"events": events}


PAYLOADS = {
    "rank-default.json": lambda: rank_request(""),
    "rank-identity.json": lambda: rank_request("identity"),
    "events-record.json": record_request,
}


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    for name, make in PAYLOADS.items():
        text = json.dumps(make(), separators=(",", ":")) + "\n"
        (out / name).write_text(text)


if __name__ == "__main__":
    main()
