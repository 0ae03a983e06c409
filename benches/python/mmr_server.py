"""The baseline: the MMR re-ranker a team would write in Python instead of running tactful.

A grpcio server speaking tactful's own Ranker API (stubs generated from proto/ by
grpcio-tools), ranking each request's candidates by maximal marginal relevance over their
embeddings with numpy: relevance is the upstream score, similarity the cosine of the
embeddings, k picks greedily. No user state, no rules, no reasons: only the diversity part of
what tactful does, so the comparison flatters the baseline.

Run by benches/side-by-side.sh, which makes the virtual environment and the stubs:
    python mmr_server.py --port 50061 --stubs DIR
"""

import argparse
import sys
from concurrent import futures

import grpc
import numpy as np


def mmr(scores, emb, k, weight=0.3):
    """Greedy MMR: each place goes to argmax (1-w)*score - w*max cosine to what is placed."""
    n = len(scores)
    k = n if k == 0 else min(k, n)
    if emb is None:
        return list(np.argsort(-scores, kind="stable")[:k])
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.where(norms > 0, norms, 1.0)
    max_sim = np.zeros(n, dtype=np.float32)
    left = np.ones(n, dtype=bool)
    picks = []
    for _ in range(k):
        value = np.where(left, (1 - weight) * scores - weight * max_sim, -np.inf)
        best = int(np.argmax(value))
        picks.append(best)
        left[best] = False
        np.maximum(max_sim, unit @ unit[best], out=max_sim)
    return picks


def serve(port, stubs):
    sys.path.insert(0, stubs)
    from tactful.v1 import ranker_pb2, ranker_pb2_grpc

    class Ranker(ranker_pb2_grpc.RankerServicer):
        def Rank(self, request, context):
            cands = request.candidates
            scores = np.fromiter((c.score for c in cands), dtype=np.float32, count=len(cands))
            emb = None
            if cands and (cands[0].embedding or cands[0].embedding_f32le):
                emb = np.stack(
                    [
                        np.frombuffer(c.embedding_f32le, dtype="<f4")
                        if c.embedding_f32le
                        else np.asarray(c.embedding, dtype=np.float32)
                        for c in cands
                    ]
                )
            order = mmr(scores, emb, request.k)
            return ranker_pb2.RankResponse(
                items=[
                    ranker_pb2.RankedItem(
                        item_id=cands[i].item_id, score=float(scores[i]), upstream_position=i
                    )
                    for i in order
                ],
                request_id=request.request_id,
            )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ranker_pb2_grpc.add_RankerServicer_to_server(Ranker(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"python MMR baseline on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=50061)
    p.add_argument("--stubs", required=True)
    a = p.parse_args()
    serve(a.port, a.stubs)
