"""Twenty clients dreaming at once: the queue (one job at a time here) answers all of them, tells the
waiting ones their place in line, and the server keeps serving afterwards."""

from __future__ import annotations

import asyncio

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image

from .conftest import RUN_NAME, TINY_DREAM

CLIENTS = 20


def queue_ranks(job) -> list[int]:
    """The places in line the server reported to a finished job."""
    ranks = []
    updates = job.communicator.updates
    while True:
        try:
            update = updates.get_nowait()
        except asyncio.QueueEmpty:
            return ranks
        if getattr(update, "rank", None) is not None:
            ranks.append(update.rank)


def test_twenty_concurrent_dreams_all_complete_and_the_server_still_answers(server, client, images) -> None:
    settings = {**TINY_DREAM, "iterations": 1}
    clients = [Client(server, verbose=False) for _ in range(CLIENTS)]  # a session each (jobs_per_client)
    jobs = [
        each.submit(handle_file(str(images["small"])), *settings.values(), api_name="/dream")
        for each in clients
    ]
    results = [job.result(timeout=300) for job in jobs]

    dreamed = [np.asarray(Image.open(path).convert("RGB")) for path, _, _ in results]
    assert all(image.shape == (93, 80, 3) for image in dreamed)
    assert all(np.array_equal(image, dreamed[0]) for image in dreamed)  # same input, same seed
    ranks = [rank for job in jobs for rank in queue_ranks(job)]
    assert max(ranks) >= 1  # at least one client was told it waited behind another

    text = client.predict(RUN_NAME, "A", 0.8, 0, 1.0, 0.0, 1.0, "", 10, 1, 0, api_name="/generate")
    assert len(text) == 11
