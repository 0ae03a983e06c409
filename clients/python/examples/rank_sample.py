import json, os
from tactful import Tactful
candidates = json.load(open("examples/candidates.json"))["candidates"]
result = Tactful(os.environ.get("TACTFUL_ADDR", "127.0.0.1:50051")).rank("alice", candidates, k=8)
for item in result.items: print(item.item_id, item.reason or f"(upstream order, degraded: {result.degraded_reason})")
