"""Hybrid search is never below the better single leg, on a small fixed set in two languages.

Real model, real Chroma and tantivy. The English queries paraphrase their
passage (the dense leg's strength) or name rare terms in it (the lexical
leg's); the Chinese ones need the lexical leg, as the model is English-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from ingest.pipeline import Source
from retrieval.evaluation import ndcg_at
from retrieval.fusion import Fusion
from retrieval.search import CANDIDATES, live_hits
from retrieval.types import Hit
from tests.conftest import MakeKb, write

PASSAGES = {
    "whales": "Blue whales are the largest animals ever known; adults reach thirty metres.",
    "tower": "The Eiffel Tower was finished in 1889 as the entrance arch of the World's Fair.",
    "tea": "Assam tea is grown in the Brahmaputra valley and gives a strong malty cup.",
    "vaccine": "The MMR vaccine protects children against measles, mumps and rubella.",
    "printer": "Error E-4021 on the LaserJet means the fuser unit has overheated.",
    "budget": "The 2025 budget moves nine percent of spending from travel to training.",
    "volcano": "Mount Etna in Sicily erupts often, sending lava down its eastern slope.",
    "coffee": "Espresso is brewed by forcing hot water through finely ground coffee.",
    "zh-search": "全文检索系统根据关键词在文档中查找信息，并按相关性排序。",
    "zh-panda": "大熊猫主要生活在四川的山区，以竹子为主要食物。",
    "zh-rail": "京沪高速铁路全长一千三百多公里，连接北京和上海。",
    "zh-tea": "龙井茶产于杭州西湖一带，是中国著名的绿茶。",
}
QUERIES = {
    "what is the biggest creature that has ever lived": "whales",
    "monument built for a world exhibition in Paris": "tower",
    "strong black tea from India": "tea",
    "measles mumps rubella": "vaccine",
    "E-4021 fuser": "printer",
    "shifting money from trips to courses": "budget",
    "Etna lava": "volcano",
    "how do you make espresso": "coffee",
    "关键词检索怎么排序": "zh-search",
    "熊猫吃什么": "zh-panda",
    "北京到上海的高铁有多长": "zh-rail",
    "龙井茶产自哪里": "zh-tea",
}


def test_hybrid_is_never_below_the_better_leg(make_kb: MakeKb, tmp_path: Path) -> None:
    kb = make_kb()
    kb.ingest([Source(f"file:{name}", f"{name}.txt", write(tmp_path / f"{name}.txt", text))
               for name, text in PASSAGES.items()])
    kb.fusion = Fusion(0.5, 0.1, frozenset({"latin"}))  # as open_knowledge_base sets it
    quality = {}
    for mode in ("dense", "lexical", "hybrid"):
        total = 0.0
        for query, wanted in QUERIES.items():
            ranking = [h.source.removesuffix(".txt") for h in kb.search(query, 5, mode=mode)]
            total += ndcg_at(ranking, {wanted: 1}, 10)
        quality[mode] = total / len(QUERIES)
    assert quality["hybrid"] >= max(quality["dense"], quality["lexical"]), quality
    assert quality["hybrid"] > 0.8, quality


def test_hybrid_reads_only_the_dense_chunks_it_returns(
    make_kb: MakeKb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dense leg brings ids and scores; only the chunks that make the results and
    that the lexical leg did not bring are read, and the results are those of fusing
    whole hits."""
    kb = make_kb()
    kb.ingest([Source(f"file:{name}", f"{name}.txt", write(tmp_path / f"{name}.txt", text))
               for name, text in PASSAGES.items()])
    kb.fusion = fusion = Fusion(0.5, 0.1, frozenset({"latin"}))
    store, k = kb.store, 3
    read: list[str] = []
    hits = store.hits

    def spied(scored: Sequence[tuple[str, float]]) -> list[Hit]:
        read.extend(chunk_id for chunk_id, _ in scored)
        return hits(scored)

    reads = 0
    for query in QUERIES:
        vector = kb.embedder.embed_query(query)
        dense = live_hits(lambda n, v=vector: store.query(v, n), CANDIDATES["dense"],
                          kb.catalog.current_generations, k)
        lexical = live_hits(lambda n, q=query: store.lexical_query(q, n),
                            CANDIDATES["lexical"], kb.catalog.current_generations, k)
        fused = fusion.fuse(query, dense, lexical, limit=2 * k)
        read.clear()
        with monkeypatch.context() as patch:
            patch.setattr(store, "hits", spied)
            found = kb.search(query, k)
        assert list(found) == fused[:k], query  # text, source, page, scores and ranks
        assert set(read) <= {h.id for h in fused} - {h.id for h in lexical}, query
        reads += bool(read)
    assert reads  # some results came from the dense leg alone
