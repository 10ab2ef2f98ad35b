"""Declaration intake: the human-facing side of ``customs/declarations``.

``rules`` (pure validation after the Hong Kong road cargo system rules), ``fees`` (pure fee
schedule), ``reference`` (CCRN-style reference numbers), ``store`` (Redis and in-memory
declaration stores), ``forms`` (the documented HTTP request and response models) and
``service`` (the aiohttp app). Only ``store`` and ``service`` do I/O.
"""
