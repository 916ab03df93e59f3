"""Copy detection: which registered works a picture copies.

Descriptors turn pictures into vectors (``create_descriptor``: ``vlad``, ``pdq``,
``clip:ARCH/TAG``); a store keeps them (``open_store``: a plain path is a FAISS store,
``milvus://`` or ``milvus-lite://`` a Milvus collection); :class:`SimilarityIndex` searches,
verifies candidates with local features and RANSAC (``verify``), and grades each match with
calibrated thresholds; ``copyeval`` measures a configuration on a query set and ``audit`` writes
a corpus-wide report.

    from aigcguard.provenance.similarity import SimilarityIndex, Reference
    with SimilarityIndex.create("refs", descriptor="vlad") as index:
        index.add([Reference("works/dawn.jpg", title="Dawn", creator="Ann")])
        [result] = index.search_files(["upload.jpg"])
"""
